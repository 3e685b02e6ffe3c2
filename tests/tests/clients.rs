//! Real OCI clients driving corral as their runtime: podman (`--runtime`)
//! and containerd through `ctr run --runc-binary`. Each test keeps the
//! client's storage, state and sockets in a scratch directory, and its
//! cgroups below this test process's own memory cgroup.
//!
//! Besides the runtime binary, the tests pass only per-run flags that keep
//! the clients in the test's own scratch places. These are the storage and
//! state directories, `--cgroup-manager cgroupfs` with a `--cgroup-parent`
//! (or `ctr --cgroup`) below the test's cgroup, and `--network none`, so that
//! podman creates no bridge on the host.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use corral_tests::oci::{build_rootfs, describe, output_within, text, PROBE};
use corral_tests::{binary, require_root, unique_name, wait_until};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
const IMAGE: &str = "localhost/corral-busybox:test";

/// Returns false, after a loud SKIP line, when `program` is not installed.
fn require_program(test: &str, program: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    if !found {
        eprintln!("SKIP {test}: {program} is not installed (Debian package {package})");
    }
    found
}

/// Returns this process's cgroup on the memory controller (or in the v2
/// hierarchy), as a path from the hierarchy root.
fn own_memory_cgroup() -> String {
    let text = fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    text.lines()
        .find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let has_memory = controllers.split(',').any(|c| c == "memory");
            (has_memory || controllers.is_empty()).then(|| path.to_string())
        })
        .expect("a memory or unified cgroup line")
}

/// Scratch space of one client test: a busybox root, the client's state,
/// and a cgroup parent below this process's cgroup. Drop unmounts what the
/// client mounted below the scratch directory and removes the cgroups.
struct ClientScratch {
    dir: tempfile::TempDir,
    cgroup_parent: String,
    cgroup_name: String,
}

impl ClientScratch {
    fn new(test: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("corral-client-")
            .tempdir()
            .expect("scratch directory");
        let cgroup_name = unique_name(test);
        let own = own_memory_cgroup();
        let cgroup_parent = format!("{}/{cgroup_name}", own.trim_end_matches('/'));
        build_rootfs(&dir.path().join("rootfs"));
        ClientScratch {
            dir,
            cgroup_parent,
            cgroup_name,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the busybox root as a tarball, as `docker export` would.
    fn rootfs_tarball(&self) -> PathBuf {
        let tarball = self.path("rootfs.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(self.path("rootfs"))
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(status.success(), "tar of the busybox root failed");
        tarball
    }
}

impl Drop for ClientScratch {
    fn drop(&mut self) {
        unmount_below(self.dir.path());
        for dir in corral_tests::host::cgroups_named(&self.cgroup_name) {
            let mut pending = vec![dir.clone()];
            let mut all = Vec::new();
            while let Some(current) = pending.pop() {
                all.push(current.clone());
                for entry in fs::read_dir(&current).into_iter().flatten().flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        pending.push(entry.path());
                    }
                }
            }
            // Children first.
            for cgroup in all.iter().rev() {
                let _ = fs::remove_dir(cgroup);
            }
        }
    }
}

/// Lazily unmounts every mount below `dir`, deepest first: the overlay and
/// private bind mounts that podman's storage and containerd's snapshotter
/// made there.
fn unmount_below(dir: &Path) {
    let prefix = dir.display().to_string();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut targets: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|target| target.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for target in targets {
        let _ = nix::mount::umount2(target.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// podman with every path in the scratch directory and corral as runtime.
fn podman(scratch: &ClientScratch) -> Command {
    let mut command = Command::new("podman");
    command
        .arg("--root")
        .arg(scratch.path("storage"))
        .arg("--runroot")
        .arg(scratch.path("run"))
        .arg("--tmpdir")
        .arg(scratch.path("libpod"))
        .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
        .arg("--runtime")
        .arg(binary("corral"))
        .stdin(Stdio::null());
    command
}

fn podman_output(scratch: &ClientScratch, args: &[&str]) -> Output {
    let mut command = podman(scratch);
    command.args(args);
    output_within(command, CLIENT_TIMEOUT)
}

/// `podman run` arguments that keep the container's cgroup and network to
/// the test.
fn run_args<'a>(scratch: &'a ClientScratch, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--network",
        "none",
        "--cgroup-parent",
        scratch.cgroup_parent.as_str(),
    ];
    args.extend_from_slice(extra);
    args
}

/// Removes what podman keeps in its storage, so that drop can unmount it.
fn podman_cleanup(scratch: &ClientScratch) {
    let _ = podman_output(scratch, &["rm", "--all", "--force"]);
    let _ = podman_output(scratch, &["rmi", "--all", "--force"]);
}

#[test]
fn podman_runs_rootfs_with_exit_code() {
    if !require_root("podman_runs_rootfs_with_exit_code")
        || !require_program("podman_runs_rootfs_with_exit_code", "podman", "podman")
    {
        return;
    }
    let scratch = ClientScratch::new("podman-rootfs");
    let rootfs = scratch.path("rootfs").display().to_string();
    let output = podman_output(
        &scratch,
        &run_args(
            &scratch,
            &[
                "--rm",
                "--rootfs",
                &rootfs,
                "/bin/sh",
                "-c",
                "echo hello from corral; exit 3",
            ],
        ),
    );
    podman_cleanup(&scratch);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert_eq!(text(&output.stdout).trim(), "hello from corral");
}

#[test]
fn podman_runs_imported_image_stop_and_rm() {
    if !require_root("podman_runs_imported_image_stop_and_rm")
        || !require_program("podman_runs_imported_image_stop_and_rm", "podman", "podman")
    {
        return;
    }
    let scratch = ClientScratch::new("podman-image");
    let tarball = scratch.rootfs_tarball();
    let import = podman_output(&scratch, &["import", tarball.to_str().unwrap(), IMAGE]);
    assert!(import.status.success(), "{}", describe(&import));

    let result = std::panic::catch_unwind(|| {
        let output = podman_output(
            &scratch,
            &run_args(
                &scratch,
                &["--rm", "--hostname", "imported", IMAGE, PROBE, "identity"],
            ),
        );
        assert!(output.status.success(), "{}", describe(&output));
        let stdout = text(&output.stdout);
        assert!(stdout.contains("pid=1\n"), "{stdout}");
        assert!(stdout.contains("hostname=imported\n"), "{stdout}");

        let output = podman_output(
            &scratch,
            &run_args(&scratch, &["--rm", IMAGE, PROBE, "exit", "42"]),
        );
        assert_eq!(output.status.code(), Some(42), "{}", describe(&output));

        // The shell exits 0 on SIGTERM, so `stop` succeeds without SIGKILL.
        let name = "corral-stop-me";
        let script = "trap 'exit 0' TERM; echo ready; while true; do sleep 1; done";
        let output = podman_output(
            &scratch,
            &run_args(
                &scratch,
                &["--detach", "--name", name, IMAGE, "/bin/sh", "-c", script],
            ),
        );
        assert!(output.status.success(), "{}", describe(&output));
        let running = wait_until(Duration::from_secs(20), || {
            let ps = podman_output(&scratch, &["ps", "--format", "{{.Names}}"]);
            text(&ps.stdout).lines().any(|l| l == name)
        });
        assert!(running, "{name} never ran");
        let logs = podman_output(&scratch, &["logs", name]);
        assert!(text(&logs.stdout).contains("ready"), "{}", describe(&logs));

        let stop = podman_output(&scratch, &["stop", "--time", "10", name]);
        assert!(stop.status.success(), "{}", describe(&stop));
        let inspect = podman_output(
            &scratch,
            &[
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.ExitCode}}",
                name,
            ],
        );
        assert_eq!(
            text(&inspect.stdout).trim(),
            "exited 0",
            "{}",
            describe(&inspect)
        );

        let rm = podman_output(&scratch, &["rm", name]);
        assert!(rm.status.success(), "{}", describe(&rm));
        let all = podman_output(&scratch, &["ps", "--all", "--format", "{{.Names}}"]);
        assert!(!text(&all.stdout).contains(name), "{name} remains after rm");
    });
    podman_cleanup(&scratch);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// A containerd daemon with its root, state, sockets and config in the
/// scratch directory, killed by PID on drop.
struct Containerd {
    child: Child,
    socket: PathBuf,
    /// Whether /run/containerd, where containerd-shim-runc-v2 keeps its
    /// sockets, FIFOs and runtime state at fixed paths, was created by this
    /// test and must be removed.
    created_run_dir: bool,
}

impl Containerd {
    fn start(scratch: &ClientScratch) -> Self {
        let base = scratch.path("containerd");
        fs::create_dir_all(&base).expect("containerd directory");
        let socket = base.join("containerd.sock");
        // No CRI plugin, and no snapshotter or tracing exporter that needs
        // hardware or the network.
        let config = format!(
            r#"version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = "{base}/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
"#,
            base = base.display(),
            socket = socket.display(),
        );
        fs::write(base.join("config.toml"), config).expect("containerd config");
        let created_run_dir = !Path::new("/run/containerd").exists();
        let log = fs::File::create(base.join("containerd.log")).expect("containerd log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(base.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log descriptor"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let daemon = Containerd {
            child,
            socket,
            created_run_dir,
        };
        let ready = wait_until(Duration::from_secs(20), || {
            daemon.ctr(&["version"]).status.success()
        });
        assert!(
            ready,
            "containerd did not answer on {}: {}",
            daemon.socket.display(),
            fs::read_to_string(base.join("containerd.log")).unwrap_or_default()
        );
        daemon
    }

    fn ctr(&self, args: &[&str]) -> Output {
        let mut command = Command::new("ctr");
        command.arg("--address").arg(&self.socket).args(args);
        command.stdin(Stdio::null());
        output_within(command, CLIENT_TIMEOUT)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let stopped = wait_until(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if self.created_run_dir {
            let _ = fs::remove_dir_all("/run/containerd");
        }
    }
}

#[test]
fn containerd_runs_image_with_corral() {
    if !require_root("containerd_runs_image_with_corral")
        || !require_program(
            "containerd_runs_image_with_corral",
            "containerd",
            "containerd",
        )
        || !require_program("containerd_runs_image_with_corral", "podman", "podman")
    {
        return;
    }
    let scratch = ClientScratch::new("containerd");
    // podman builds the image archive: an OCI archive of the busybox root.
    let tarball = scratch.rootfs_tarball();
    let import = podman_output(&scratch, &["import", tarball.to_str().unwrap(), IMAGE]);
    assert!(import.status.success(), "{}", describe(&import));
    let archive = scratch.path("image.oci.tar");
    let save = podman_output(
        &scratch,
        &[
            "save",
            "--format",
            "oci-archive",
            "--output",
            archive.to_str().unwrap(),
            IMAGE,
        ],
    );
    podman_cleanup(&scratch);
    assert!(save.status.success(), "{}", describe(&save));

    let daemon = Containerd::start(&scratch);
    let import = daemon.ctr(&["images", "import", archive.to_str().unwrap()]);
    assert!(import.status.success(), "{}", describe(&import));
    let images = daemon.ctr(&["images", "list", "--quiet"]);
    assert!(
        text(&images.stdout).contains(IMAGE),
        "{}",
        describe(&images)
    );

    let corral = binary("corral").display().to_string();
    let run = |id: &str, command: &[&str]| -> Output {
        let cgroup = format!("{}/{id}", scratch.cgroup_parent);
        let mut args = vec![
            "run",
            "--rm",
            "--runc-binary",
            corral.as_str(),
            "--cgroup",
            cgroup.as_str(),
            IMAGE,
            id,
        ];
        args.extend_from_slice(command);
        daemon.ctr(&args)
    };
    let output = run(
        "corral-ctr-output",
        &["/bin/sh", "-c", "echo hello from ctr; exit 5"],
    );
    assert_eq!(output.status.code(), Some(5), "{}", describe(&output));
    assert_eq!(text(&output.stdout).trim(), "hello from ctr");

    // ctr copies a task's output through FIFOs and now and then prints
    // nothing for a process that ends at once, although the exit status
    // arrives. A second run with a new id separates that from a runtime
    // that ran nothing.
    let mut output = run("corral-ctr-probe", &[PROBE, "identity"]);
    if output.status.success() && output.stdout.is_empty() {
        eprintln!("ctr printed no output of the probe; running it once more");
        output = run("corral-ctr-probe-again", &[PROBE, "identity"]);
    }
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        text(&output.stdout).contains("pid=1"),
        "{}",
        describe(&output)
    );

    let containers = daemon.ctr(&["containers", "list", "--quiet"]);
    assert_eq!(
        text(&containers.stdout).trim(),
        "",
        "run --rm left containers"
    );
    drop(daemon);
}
