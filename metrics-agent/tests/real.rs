//! End-to-end tests on the real kernel, as root: a cgroup created below the
//! test's own cgroup with a real process in it, the agent binary watching a
//! run directory with the container's state file, promtool on a real scrape,
//! and a real Prometheus that scrapes the agent and returns the job's memory
//! usage from a query.
//!
//! Without root the tests print a SKIP line and pass.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, http_get, promtool_check, samples, state, AgentProcess, ChildGuard};
use corral_runtime::state::{CgroupPaths, Status};
use procfs::process::MountInfos;
use procfs::FromRead;
use tempfile::TempDir;

/// Job name of the test container.
const JOB: &str = "realjob";

/// v1 controllers the agent reads.
const V1_CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "blkio", "pids"];

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Returns false after printing a SKIP line when the test cannot run here.
fn can_run(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIP {test}: needs root to create cgroups");
        return false;
    }
    true
}

/// Directories of a cgroup this test created, removed on drop.
struct TestCgroup {
    paths: CgroupPaths,
    /// The `id` label: the cgroup path in the memory hierarchy on v1, in the
    /// unified hierarchy on v2.
    id: String,
    created: Vec<PathBuf>,
}

static NEXT_CGROUP: AtomicUsize = AtomicUsize::new(0);

impl TestCgroup {
    /// Creates a cgroup below the test process's own cgroup in every
    /// hierarchy the agent reads. `Err` carries the reason to skip.
    fn create() -> Result<Self, String> {
        let name = format!(
            "corral-metrics-test-{}-{}",
            std::process::id(),
            NEXT_CGROUP.fetch_add(1, Ordering::Relaxed)
        );
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        let mounts = MountInfos::from_file("/proc/self/mountinfo").unwrap();

        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            Self::create_v2(&name, &own)
        } else {
            Self::create_v1(&name, &own, &mounts)
        }
    }

    fn create_v1(name: &str, own: &str, mounts: &MountInfos) -> Result<Self, String> {
        let mut cgroup = Self {
            paths: CgroupPaths::V1 {
                controllers: BTreeMap::new(),
            },
            id: String::new(),
            created: Vec::new(),
        };
        let mut controllers = BTreeMap::new();
        for controller in V1_CONTROLLERS {
            let Some(own_path) = own.lines().find_map(|line| {
                let mut fields = line.splitn(3, ':');
                let _ = fields.next();
                let names = fields.next()?;
                let path = fields.next()?;
                names.split(',').any(|n| n == controller).then_some(path)
            }) else {
                return Err(format!("no {controller} line in /proc/self/cgroup"));
            };
            let Some(mount) = mounts.0.iter().find(|mount| {
                mount.fs_type == "cgroup" && mount.super_options.contains_key(controller)
            }) else {
                return Err(format!(
                    "no cgroup v1 mount with the {controller} controller"
                ));
            };
            let below_root = Path::new(own_path)
                .strip_prefix(&mount.root)
                .map_err(|_| format!("{own_path} is outside the {controller} mount"))?;
            let dir = mount.mount_point.join(below_root).join(name);
            if !cgroup.created.contains(&dir) {
                fs::create_dir(&dir)
                    .map_err(|error| format!("failed to create {}: {error}", dir.display()))?;
                cgroup.created.push(dir.clone());
            }
            if controller == "memory" {
                cgroup.id = Path::new(own_path).join(name).display().to_string();
            }
            controllers.insert(controller.to_string(), dir);
        }
        cgroup.paths = CgroupPaths::V1 { controllers };
        Ok(cgroup)
    }

    fn create_v2(name: &str, own: &str) -> Result<Self, String> {
        let own_path = own
            .lines()
            .find_map(|line| line.strip_prefix("0::"))
            .ok_or("no unified line in /proc/self/cgroup")?;
        let dir = Path::new("/sys/fs/cgroup")
            .join(own_path.trim_start_matches('/'))
            .join(name);
        fs::create_dir(&dir)
            .map_err(|error| format!("failed to create {}: {error}", dir.display()))?;
        let cgroup = Self {
            paths: CgroupPaths::V2 { path: dir.clone() },
            id: Path::new(own_path).join(name).display().to_string(),
            created: vec![dir.clone()],
        };
        if !dir.join("memory.current").exists() {
            return Err(format!(
                "the memory controller is not enabled for {}; the test's cgroup must \
                 delegate it",
                dir.display()
            ));
        }
        Ok(cgroup)
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        self.created
            .iter()
            .map(|dir| dir.join("cgroup.procs"))
            .collect()
    }
}

impl TestCgroup {
    /// Removes the cgroup's directories, waiting for killed processes to
    /// leave them.
    fn remove(&mut self) {
        for dir in self.created.drain(..).rev() {
            // The killed process leaves the cgroup when it is reaped, which
            // the kernel may finish a moment after wait() returns.
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Err(error) = fs::remove_dir(&dir) {
                if error.kind() == std::io::ErrorKind::NotFound || Instant::now() > deadline {
                    if error.kind() != std::io::ErrorKind::NotFound {
                        eprintln!("failed to remove cgroup {}: {error}", dir.display());
                    }
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Starts a shell in `cgroup` that writes 8 MiB to a file, charging page
/// cache to the cgroup, and then sleeps.
fn start_workload(cgroup: &TestCgroup, scratch: &Path) -> ChildGuard {
    let script = format!(
        "read go; head -c 8388608 /dev/zero > {}; exec sleep 600",
        scratch.join("payload").display()
    );
    let mut child = ChildGuard(
        Command::new("/bin/sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the workload shell"),
    );
    let pid = child.0.id();
    for procs in cgroup.procs_files() {
        fs::write(&procs, pid.to_string()).unwrap_or_else(|error| {
            panic!("failed to move {pid} into {}: {error}", procs.display())
        });
    }
    // Only now, inside the cgroup, does the shell allocate.
    child.0.stdin.take().unwrap().write_all(b"go\n").unwrap();

    let payload = scratch.join("payload");
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::metadata(&payload).map(|m| m.len()).unwrap_or(0) < 8 << 20 {
        assert!(
            Instant::now() < deadline,
            "the workload did not write its file"
        );
        thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Everything one real test sets up, in drop order: processes first, then
/// the cgroup, then the temporary directory.
struct Setup {
    agent: AgentProcess,
    workload: ChildGuard,
    cgroup: TestCgroup,
    dir: TempDir,
}

impl Setup {
    /// `None` after a SKIP line when the host cannot provide the cgroup.
    fn new(test: &str) -> Option<Self> {
        let cgroup = match TestCgroup::create() {
            Ok(cgroup) => cgroup,
            Err(reason) => {
                eprintln!("SKIP {test}: {reason}");
                return None;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let workload = start_workload(&cgroup, dir.path());

        let run_dir = dir.path().join("run");
        let containers = run_dir.join("containers");
        fs::create_dir_all(containers.join("real-1")).unwrap();
        let mut container = state(
            "real-1",
            Some(JOB),
            cgroup.paths.clone(),
            Status::Running,
            Some(workload.0.id() as i32),
        );
        container.cgroup_id = cgroup.id.clone();
        container.image = "host".to_string();
        container.save(&containers).unwrap();

        let agent = AgentProcess::start(&run_dir, dir.path().join("agent.log"), &[]);
        Some(Self {
            agent,
            workload,
            cgroup,
            dir,
        })
    }

    /// Prints what a failing assertion needs to be understood.
    fn diagnostics(&self) -> String {
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let cgroup_mounts: Vec<&str> = mounts
            .lines()
            .filter(|line| line.contains(" - cgroup"))
            .collect();
        format!(
            "cgroup: {:?}\ncgroup mounts:\n{}\nstate file:\n{}\nagent log:\n{}",
            self.cgroup.paths,
            cgroup_mounts.join("\n"),
            fs::read_to_string(self.dir.path().join("run/containers/real-1/state.json"))
                .unwrap_or_default(),
            fs::read_to_string(&self.agent.log).unwrap_or_default(),
        )
    }
}

/// Returns the value of the sample of `name` for the test job.
fn job_value(text: &str, name: &str) -> Option<f64> {
    let label = format!(r#"name="{JOB}""#);
    samples(text, name)
        .into_iter()
        .find(|line| line.contains(&label))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[test]
fn real_cgroup_scrape_passes_promtool() {
    if !can_run("real_cgroup_scrape_passes_promtool") {
        return;
    }
    let Some(setup) = Setup::new("real_cgroup_scrape_passes_promtool") else {
        return;
    };
    let text = setup.agent.scrape();
    let context = || format!("{}\nscrape:\n{text}", setup.diagnostics());

    let usage = job_value(&text, "container_memory_usage_bytes");
    assert!(
        usage.is_some_and(|bytes| bytes > 0.0),
        "memory usage: {}",
        context()
    );
    let processes = job_value(&text, "container_processes");
    assert_eq!(processes, Some(1.0), "one sleeping process: {}", context());
    let threads = job_value(&text, "container_threads");
    assert_eq!(threads, Some(1.0), "{}", context());
    let descriptors = job_value(&text, "container_file_descriptors");
    assert!(
        descriptors.is_some_and(|count| count >= 3.0),
        "stdin, stdout and stderr at least: {}",
        context()
    );
    let cpu = job_value(&text, "container_cpu_usage_seconds_total");
    assert!(cpu.is_some_and(|seconds| seconds > 0.0), "{}", context());
    assert!(
        text.contains(&format!(r#"id="{}""#, setup.cgroup.id)),
        "id label: {}",
        context()
    );
    // The workload shares the test's network namespace, which is the host's.
    assert!(
        !text.contains("container_network_receive_bytes_total{"),
        "host network counters exported: {}",
        context()
    );
    assert!(
        text.lines()
            .any(|line| line == "metrics_agent_containers 1"),
        "{}",
        context()
    );

    let Some((passed, report)) = promtool_check(&text) else {
        return;
    };
    assert!(
        passed,
        "promtool check metrics failed:\n{report}\n{}",
        context()
    );
}

/// A Prometheus server with a temporary configuration and storage, killed by
/// PID on drop; the temporary directory goes with it.
struct PrometheusProcess {
    address: SocketAddr,
    log: PathBuf,
    _child: ChildGuard,
    _dir: TempDir,
}

impl PrometheusProcess {
    /// `None` after a SKIP line when Prometheus is not installed.
    fn start(target: SocketAddr) -> Option<Self> {
        let binary = Path::new("/usr/bin/prometheus");
        if !binary.exists() {
            eprintln!("SKIP: /usr/bin/prometheus is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: corral\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let log = dir.path().join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus");
        Some(Self {
            address,
            log,
            _child: ChildGuard(child),
            _dir: dir,
        })
    }

    /// Runs an instant query and returns the first result's value.
    fn query(&self, expression: &str) -> Option<f64> {
        let encoded: String = expression
            .chars()
            .map(|c| match c {
                '{' => "%7B".to_string(),
                '}' => "%7D".to_string(),
                '"' => "%22".to_string(),
                '=' => "%3D".to_string(),
                ' ' => "%20".to_string(),
                other => other.to_string(),
            })
            .collect();
        let (status, body) =
            http_get(self.address, &format!("/api/v1/query?query={encoded}")).ok()?;
        if status != 200 {
            return None;
        }
        let response: serde_json::Value = serde_json::from_str(&body).ok()?;
        response["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }
}

#[test]
fn prometheus_queries_real_container() {
    if !can_run("prometheus_queries_real_container") {
        return;
    }
    let Some(setup) = Setup::new("prometheus_queries_real_container") else {
        return;
    };
    let Some(prometheus) = PrometheusProcess::start(setup.agent.address) else {
        return;
    };

    let expression = format!(r#"container_memory_usage_bytes{{name="{JOB}"}}"#);
    let deadline = Instant::now() + Duration::from_secs(60);
    let value = loop {
        if let Some(value) = prometheus.query(&expression) {
            break value;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus returned no value for {expression} within 60 s\n{}\nprometheus log:\n{}",
            setup.diagnostics(),
            fs::read_to_string(&prometheus.log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(500));
    };
    assert!(
        value > 0.0,
        "{expression} = {value}\n{}",
        setup.diagnostics()
    );
}

/// Starts `sleep 600` in every directory of `cgroup`.
fn start_sleeper(cgroup: &TestCgroup) -> ChildGuard {
    let child = ChildGuard(
        Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sleep"),
    );
    for procs in cgroup.procs_files() {
        fs::write(&procs, child.0.id().to_string()).unwrap();
    }
    child
}

#[test]
fn kept_descriptors_follow_real_cgroup() {
    if !can_run("kept_descriptors_follow_real_cgroup") {
        return;
    }
    let Some(mut setup) = Setup::new("kept_descriptors_follow_real_cgroup") else {
        return;
    };
    let first = setup.agent.scrape();
    let kept: f64 = first
        .lines()
        .find_map(|line| line.strip_prefix("metrics_agent_kept_descriptors "))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0);
    assert!(kept > 0.0, "no descriptors kept:\n{first}");
    assert_eq!(
        job_value(&first, "container_processes"),
        Some(1.0),
        "{first}"
    );

    // Scrapes right after each other: on v1 the kernel would hand a kept
    // cgroup.procs the PID list of the previous read.
    let sleeper = start_sleeper(&setup.cgroup);
    let second = setup.agent.scrape();
    let context = || format!("{}\nscrape:\n{second}", setup.diagnostics());
    assert_eq!(
        job_value(&second, "container_processes"),
        Some(2.0),
        "{}",
        context()
    );
    assert_eq!(
        job_value(&second, "container_threads"),
        Some(2.0),
        "{}",
        context()
    );
    drop(sleeper);
    let third = setup.agent.scrape();
    assert_eq!(
        job_value(&third, "container_processes"),
        Some(1.0),
        "{third}"
    );

    // The container's init exits and its cgroup is removed while the state
    // file still records it as running. The next scrape skips it without an
    // error and closes its descriptors.
    let _ = setup.workload.0.kill();
    let _ = setup.workload.0.wait();
    setup.cgroup.remove();
    let last = setup.agent.scrape();
    assert!(!last.contains(&format!(r#"name="{JOB}""#)), "{last}");
    for line in [
        "metrics_agent_containers 0",
        "metrics_agent_kept_descriptors 0",
        r#"metrics_agent_read_errors_total{kind="cgroup"} 0"#,
        r#"metrics_agent_read_errors_total{kind="proc"} 0"#,
        r#"metrics_agent_read_errors_total{kind="parse"} 0"#,
    ] {
        assert!(
            last.lines().any(|candidate| candidate == line),
            "missing {line}:\n{last}"
        );
    }
}

/// A cgroup directory without processes, removed on drop.
struct EmptyCgroup(PathBuf);

impl EmptyCgroup {
    fn create(path: PathBuf) -> Self {
        fs::create_dir(&path)
            .unwrap_or_else(|error| panic!("failed to create {}: {error}", path.display()));
        Self(path)
    }
}

impl Drop for EmptyCgroup {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir(&self.0) {
            if error.kind() != std::io::ErrorKind::NotFound {
                eprintln!("failed to remove cgroup {}: {error}", self.0.display());
            }
        }
    }
}

#[test]
fn recreated_cgroup_is_read_again() {
    if !can_run("recreated_cgroup_is_read_again") {
        return;
    }
    let cgroup = match TestCgroup::create() {
        Ok(cgroup) => cgroup,
        Err(reason) => {
            eprintln!("SKIP recreated_cgroup_is_read_again: {reason}");
            return;
        }
    };
    let root = match &cgroup.paths {
        CgroupPaths::V1 { controllers } => controllers["memory"].clone(),
        CgroupPaths::V2 { path } => path.clone(),
    };
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(
        &dir.path().join("run"),
        dir.path().join("agent.log"),
        &["--cgroup-root".as_ref(), root.as_os_str()],
    );
    let child_id = format!(r#"id="{}/again""#, cgroup.id);
    let child = EmptyCgroup::create(root.join("again"));
    let first = agent.scrape();
    assert!(
        samples(&first, "container_memory_usage_bytes")
            .iter()
            .any(|line| line.contains(&child_id)),
        "{first}\n{}",
        agent.log()
    );

    // A new cgroup under the same path: the descriptors kept for the old one
    // report it removed, and the agent must read the new one in this scrape.
    drop(child);
    let _child = EmptyCgroup::create(root.join("again"));
    let second = agent.scrape();
    assert!(
        samples(&second, "container_memory_usage_bytes")
            .iter()
            .any(|line| line.contains(&child_id)),
        "{second}\n{}",
        agent.log()
    );
}
