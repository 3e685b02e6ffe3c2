//! OCI bundles for the runtime-spec tests: a busybox root filesystem with
//! `corral-probe` in it, a config.json to edit as JSON, and `corral` run on
//! it with state and cgroups in scratch places that are removed on drop.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use corral_runtime::cgroups::Hierarchy;
use corral_runtime::state::CgroupPaths;
use serde_json::{json, Value};

use crate::{binary, unique_name, wait_until};

/// Path of the probe inside the bundle's root filesystem.
pub const PROBE: &str = "/bin/corral-probe";

/// Busybox applets linked into the root filesystem, enough for shell
/// scripts in tests and hooks.
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "ls", "sleep", "true", "false", "env", "id", "mkdir", "touch", "kill",
    "ps", "mount", "hostname", "grep", "readlink", "stat", "chmod", "test", "wc", "tr", "mknod",
];

/// The capabilities that runc's default spec grants, as a runtime test
/// expects them when a config does not name its own.
pub const DEFAULT_CAPABILITIES: &[&str] = &["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// One container's bundle, state root and cgroup, all removed on drop.
pub struct Bundle {
    pub scratch: tempfile::TempDir,
    pub id: String,
    /// The relative `linux.cgroupsPath`: below this test process's own
    /// cgroup in every hierarchy.
    pub cgroup_path: String,
    pub config: Value,
}

impl Bundle {
    /// Builds a busybox root filesystem with the probe and a config that
    /// runs `corral-probe identity` in new pid, network, ipc, uts, mount and
    /// cgroup namespaces.
    pub fn new(test: &str) -> Self {
        let scratch = tempfile::Builder::new()
            .prefix("corral-oci-")
            .tempdir()
            .expect("scratch directory");
        let id = unique_name(test);
        let bundle = Bundle {
            cgroup_path: id.clone(),
            config: base_config(&id),
            id,
            scratch,
        };
        build_rootfs(&bundle.rootfs());
        fs::create_dir_all(bundle.root()).expect("state root");
        bundle
    }

    pub fn path(&self) -> PathBuf {
        self.scratch.path().join("bundle")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    /// Returns the state root passed as `corral --root`.
    pub fn root(&self) -> PathBuf {
        self.scratch.path().join("state")
    }

    /// Returns a scratch directory on the host for files that tests and
    /// hooks share, creating it.
    pub fn host_dir(&self) -> PathBuf {
        let dir = self.scratch.path().join("host");
        fs::create_dir_all(&dir).expect("host scratch directory");
        dir
    }

    /// Sets `process.args`.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    /// Sets the value at a `/`-separated JSON pointer below the config,
    /// creating missing objects on the way.
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        let mut current = &mut self.config;
        for key in pointer.trim_start_matches('/').split('/') {
            if current.get(key).is_none() {
                current[key] = json!({});
            }
            current = &mut current[key];
        }
        *current = value;
        self
    }

    /// Appends one entry to the array at `pointer`, creating the array.
    pub fn push(&mut self, pointer: &str, value: Value) -> &mut Self {
        let current = self
            .config
            .pointer_mut(pointer)
            .filter(|v| v.is_array())
            .map(|v| v.as_array_mut().expect("checked array"));
        match current {
            Some(array) => array.push(value),
            None => {
                self.set(pointer, json!([value]));
            }
        }
        self
    }

    pub fn write_config(&self) {
        let body = serde_json::to_string_pretty(&self.config).expect("config serializes");
        fs::write(self.path().join("config.json"), body).expect("write config.json");
    }

    /// `corral --root STATE` with stdin closed.
    pub fn corral(&self) -> Command {
        let mut command = Command::new(binary("corral"));
        command.arg("--root").arg(self.root());
        command.stdin(Stdio::null());
        command
    }

    /// Runs `corral ARGS` to its end.
    pub fn corral_output(&self, args: &[&str]) -> Output {
        let mut command = self.corral();
        command.args(args);
        output_within(command, COMMAND_TIMEOUT)
    }

    /// Writes the config and runs the container to its end with `corral run`.
    pub fn run(&self) -> Output {
        self.write_config();
        let mut command = self.corral();
        command.args(["run", &self.id, "--bundle"]).arg(self.path());
        output_within(command, COMMAND_TIMEOUT)
    }

    /// Runs the container and returns its stdout, failing the test with the
    /// whole output when it does not exit 0.
    pub fn run_ok(&self) -> String {
        let output = self.run();
        assert!(
            output.status.success(),
            "corral run {} exited with {}\n{}",
            self.id,
            output.status,
            describe(&output)
        );
        text(&output.stdout)
    }

    /// Writes the config and runs `corral create`; the container's stdout
    /// and stderr go to files in the host directory, because the container
    /// keeps them open after `create` returns.
    pub fn create(&self) -> Output {
        self.write_config();
        let host = self.host_dir();
        let stdout = fs::File::create(host.join("container.stdout")).expect("stdout file");
        let stderr = fs::File::create(host.join("container.stderr")).expect("stderr file");
        let mut command = self.corral();
        command
            .args(["create", &self.id, "--bundle"])
            .arg(self.path())
            .stdout(stdout)
            .stderr(stderr);
        let status = status_within(command, COMMAND_TIMEOUT);
        Output {
            status,
            stdout: fs::read(host.join("container.stdout")).unwrap_or_default(),
            stderr: fs::read(host.join("container.stderr")).unwrap_or_default(),
        }
    }

    /// Creates the container and fails the test when that fails.
    pub fn create_ok(&self) {
        let output = self.create();
        assert!(
            output.status.success(),
            "corral create {} exited with {}\n{}",
            self.id,
            output.status,
            describe(&output)
        );
    }

    /// Creates and starts the container, for tests that inspect it while it
    /// runs.
    pub fn start_ok(&self) {
        self.create_ok();
        let output = self.corral_output(&["start", &self.id]);
        assert!(
            output.status.success(),
            "corral start {} failed\n{}",
            self.id,
            describe(&output)
        );
    }

    /// What the container wrote to stdout when started by [`Bundle::create`].
    pub fn container_stdout(&self) -> String {
        fs::read_to_string(self.host_dir().join("container.stdout")).unwrap_or_default()
    }

    /// `corral state ID` as JSON, or `None` when it fails.
    pub fn state(&self) -> Option<Value> {
        let output = self.corral_output(&["state", &self.id]);
        if !output.status.success() {
            return None;
        }
        serde_json::from_slice(&output.stdout).ok()
    }

    /// The `status` field of `corral state ID`.
    pub fn status(&self) -> String {
        self.state()
            .and_then(|state| state["status"].as_str().map(str::to_string))
            .unwrap_or_else(|| "<no state>".to_string())
    }

    /// Waits up to ten seconds for the container to reach `status`.
    pub fn wait_for_status(&self, status: &str) -> bool {
        wait_until(Duration::from_secs(10), || self.status() == status)
    }

    /// Host PID of the container's init, from `corral state`.
    pub fn pid(&self) -> i32 {
        self.state()
            .and_then(|state| state["pid"].as_i64())
            .expect("container state has a pid") as i32
    }

    /// The container's cgroup directories, as [`Hierarchy::locate`] computes
    /// them for the config's relative `cgroupsPath`.
    pub fn cgroup_paths(&self) -> CgroupPaths {
        let hierarchy = Hierarchy::detect().expect("cgroup hierarchies");
        hierarchy.locate(&self.cgroup_path).expect("cgroup path").0
    }

    /// The directory of the container's cgroup for `controller` (v1) or its
    /// only directory (v2).
    pub fn cgroup_dir(&self, controller: &str) -> PathBuf {
        match self.cgroup_paths() {
            CgroupPaths::V1 { controllers } => controllers
                .get(controller)
                .cloned()
                .unwrap_or_else(|| panic!("no v1 {controller} controller on this host")),
            CgroupPaths::V2 { path } => path,
        }
    }

    /// Reads one file of the container's cgroup, trimmed.
    pub fn cgroup_file(&self, controller: &str, file: &str) -> String {
        let path = self.cgroup_dir(controller).join(file);
        fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("failed to read {}: {error}", path.display()))
            .trim()
            .to_string()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if self.root().join(&self.id).exists() {
            let _ = self.corral_output(&["delete", "--force", &self.id]);
        }
        if let Ok(hierarchy) = Hierarchy::detect() {
            if let Ok((paths, _)) = hierarchy.locate(&self.cgroup_path) {
                remove_cgroup(&paths);
            }
        }
    }
}

/// How long one `corral` command may take before a test fails it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `command` with its output captured, and SIGKILLs it when it is still
/// running after `timeout`, so a runtime that hangs fails the test instead
/// of blocking the whole suite.
pub fn output_within(mut command: Command, timeout: Duration) -> Output {
    use std::io::Read;

    let program = format!("{command:?}");
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("failed to start {program}: {error}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stdout.read_to_end(&mut buffer);
        buffer
    });
    let err_reader = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stderr.read_to_end(&mut buffer);
        buffer
    });
    let mut status = None;
    let finished = wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{program} did not finish within {} s", timeout.as_secs());
    }
    Output {
        status: status.expect("finished child has a status"),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Runs `command` with the stdout and stderr it was given, and SIGKILLs it
/// when it is still running after `timeout`.
pub fn status_within(mut command: Command, timeout: Duration) -> ExitStatus {
    let program = format!("{command:?}");
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("failed to start {program}: {error}"));
    let mut status = None;
    let finished = wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{program} did not finish within {} s", timeout.as_secs());
    }
    status.expect("finished child has a status")
}

/// Kills what is left in a cgroup and removes its directories.
pub fn remove_cgroup(paths: &CgroupPaths) {
    let dirs: Vec<PathBuf> = match paths {
        CgroupPaths::V1 { controllers } => controllers.values().cloned().collect(),
        CgroupPaths::V2 { path } => vec![path.clone()],
    };
    for dir in dirs {
        if !dir.exists() {
            continue;
        }
        let _ = wait_until(Duration::from_secs(5), || {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill takes integers only; the PID was read from the
                // test's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            fs::remove_dir(&dir).is_ok() || !dir.exists()
        });
    }
}

/// Copies busybox, its applet links, the probe and the probe's shared
/// libraries into `rootfs`.
pub fn build_rootfs(rootfs: &Path) {
    for dir in ["bin", "dev", "proc", "sys", "tmp", "etc"] {
        fs::create_dir_all(rootfs.join(dir)).expect("rootfs directory");
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: install the busybox-static package"
    );
    fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in APPLETS {
        symlink("busybox", rootfs.join("bin").join(applet)).expect("applet link");
    }
    let probe = binary("corral-probe");
    fs::copy(&probe, rootfs.join("bin/corral-probe")).expect("copy corral-probe");
    for library in shared_libraries(&probe) {
        let target = rootfs.join(library.strip_prefix("/").expect("absolute library path"));
        fs::create_dir_all(target.parent().expect("library directory")).expect("lib dir");
        fs::copy(&library, &target)
            .unwrap_or_else(|error| panic!("failed to copy {}: {error}", library.display()));
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("passwd");
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").expect("group");
}

/// Shared libraries of an executable, with the dynamic loader, from `ldd`.
fn shared_libraries(executable: &Path) -> Vec<PathBuf> {
    let output = Command::new("ldd")
        .arg(executable)
        .output()
        .expect("run ldd on corral-probe");
    text(&output.stdout)
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A config in the shape of runc's default spec, running the probe.
fn base_config(cgroup_path: &str) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": [PROBE, "identity"],
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": DEFAULT_CAPABILITIES,
                "effective": DEFAULT_CAPABILITIES,
                "permitted": DEFAULT_CAPABILITIES,
            },
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "oci-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                           {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "cgroupsPath": cgroup_path,
            "maskedPaths": corral_runtime::job::MASKED_PATHS,
            "readonlyPaths": corral_runtime::job::READONLY_PATHS
        }
    })
}

/// Lossy UTF-8 of command output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exit status, stdout and stderr of a command, for failure messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// Parses `KEY=VALUE` lines; a repeated key keeps its last value.
pub fn key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// One line of `corral-probe mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountLine {
    pub target: String,
    pub fstype: String,
    pub options: Vec<String>,
    pub super_options: Vec<String>,
    /// Propagation tags such as `shared:12` or `master:3`.
    pub tags: Vec<String>,
}

/// Parses the output of `corral-probe mounts`.
pub fn parse_mounts(text: &str) -> Vec<MountLine> {
    let split = |field: &str| -> Vec<String> {
        if field == "-" {
            Vec::new()
        } else {
            field.split(',').map(str::to_string).collect()
        }
    };
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let [target, fstype, options, super_options, tags] = fields[..] else {
                return None;
            };
            Some(MountLine {
                target: target.to_string(),
                fstype: fstype.to_string(),
                options: split(options),
                super_options: split(super_options),
                tags: split(tags),
            })
        })
        .collect()
}

/// The last mount at `target`, which is the one a path lookup sees.
pub fn mount_at<'a>(mounts: &'a [MountLine], target: &str) -> Option<&'a MountLine> {
    mounts.iter().rev().find(|m| m.target == target)
}

/// Capability bit mask of the names, as /proc/PID/status prints it.
pub fn capability_mask(names: &[&str]) -> String {
    let mut mask = 0u64;
    for name in names {
        let number = CAPABILITY_NAMES
            .iter()
            .position(|known| known == name)
            .unwrap_or_else(|| panic!("unknown capability {name}"));
        mask |= 1 << number;
    }
    format!("{mask:016x}")
}

/// Capability names in the order of their numbers in linux/capability.h.
const CAPABILITY_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];
