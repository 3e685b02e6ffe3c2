//! Attacks on the sandbox of a job, one test per known escape class. Each
//! job runs through `corral run` with the OCI config that supervisord would
//! generate and tries the escape from inside. The test then asserts that
//! the attempt failed and that the host is unchanged: no file, mount or
//! device node appeared outside the container, and the runtime's binary is
//! byte-identical.
//!
//! The attacks use the probe (`corral-probe`), whose attack subcommands use
//! arguments that do no harm when a defence is missing: a wrong reboot
//! magic, or an append to the runtime's binary, which leaves it runnable.
//! Every test needs root. The ones that build an image directory also need
//! busybox-static, and the raw device test needs losetup.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::hash::Hasher;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use corral_runtime::job::{MASKED_PATHS, READONLY_PATHS};
use corral_tests::sandbox::{probe, stdout, Sandbox};
use corral_tests::{binary, require_root, serial, wait_until};

const EPERM: i32 = libc::EPERM;

/// One line of probe output: `NAME=VALUE` or `NAME!errno=N`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Value(String),
    Errno(i32),
}

/// Parses the probe's `NAME=VALUE` and `NAME!errno=N` lines; a later line
/// with the same name wins.
fn outcomes(text: &str) -> BTreeMap<String, Outcome> {
    let mut parsed = BTreeMap::new();
    for line in text.lines() {
        if let Some((name, code)) = line.split_once("!errno=") {
            let code = code.trim().parse().unwrap_or(-1);
            parsed.insert(name.to_string(), Outcome::Errno(code));
        } else if let Some((name, value)) = line.split_once('=') {
            parsed.insert(name.to_string(), Outcome::Value(value.to_string()));
        }
    }
    parsed
}

/// Returns whether the probe's `masked` result shows nothing readable: the
/// path failed to open, or it is an empty file or directory.
fn is_empty_or_failed(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Errno(_) => true,
        Outcome::Value(value) => value == "file bytes=0" || value == "dir entries=0",
    }
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A root filesystem directory for `{"path": DIR}` images: busybox-static
/// with a link per applet, the probe at /bin/corral-probe and the probe's
/// shared libraries. The directory is removed on drop.
struct ImageDir {
    dir: tempfile::TempDir,
}

const BUSYBOX: &str = "/bin/busybox";

impl ImageDir {
    /// Builds the image, or returns None after a SKIP line when
    /// busybox-static is missing.
    fn build(test: &str) -> Option<Self> {
        if !Path::new(BUSYBOX).exists() {
            eprintln!("SKIP {test}: {BUSYBOX} is missing; install Debian's busybox-static");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("corral-attack-image-")
            .tempdir()
            .expect("image dir");

        let root = dir.path().to_path_buf();
        // A process of any user must be able to walk the image's root.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod image root");
        for name in ["bin", "dev", "etc", "proc", "sys", "tmp"] {
            fs::create_dir(root.join(name)).expect("image directory");
        }
        fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))
            .expect("chmod tmp");

        fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
        let applets = Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&applets.stdout).lines() {
            if applet != "busybox" && !applet.is_empty() {
                symlink("busybox", root.join("bin").join(applet)).expect("applet link");
            }
        }

        let image = ImageDir { dir };
        image.install_probe("bin/corral-probe");
        fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("passwd");
        fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
        Some(image)
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Returns the `image` value of a job that runs on this directory.
    fn image_json(&self) -> String {
        serde_json::json!({"path": self.root()}).to_string()
    }

    /// Copies the probe to `relative` inside the image, with its shared
    /// libraries.
    fn install_probe(&self, relative: &str) {
        let probe = binary("corral-probe");
        fs::copy(&probe, self.root().join(relative)).expect("copy corral-probe");
        self.install_libraries(&probe);
    }

    /// Copies the shared libraries that `executable` loads (from `ldd`)
    /// into the image, at their host paths.
    fn install_libraries(&self, executable: &Path) {
        let listed = Command::new("ldd")
            .arg(executable)
            .output()
            .expect("run ldd");
        for line in String::from_utf8_lossy(&listed.stdout).lines() {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            let Some(path) = path.filter(|p| p.starts_with('/')) else {
                continue;
            };
            let target = self.root().join(path.trim_start_matches('/'));
            fs::create_dir_all(target.parent().expect("library dir")).expect("library dir");
            if !target.exists() {
                fs::copy(path, &target).expect("copy shared library");
            }
        }
    }
}

/// A host directory that a job must not reach, created empty.
struct Victim {
    dir: tempfile::TempDir,
}

impl Victim {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("corral-attack-victim-")
            .tempdir()
            .expect("victim dir");
        Victim { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Lists every path below the directory (relative, with its mode and
    /// size), sorted.
    fn listing(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut pending = vec![self.path().to_path_buf()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(metadata) = fs::symlink_metadata(&path) else {
                    continue;
                };
                let relative = path.strip_prefix(self.path()).unwrap_or(&path);
                found.push(format!(
                    "{} {:o} {}",
                    relative.display(),
                    metadata.mode(),
                    metadata.len()
                ));
                if metadata.is_dir() {
                    pending.push(path);
                }
            }
        }
        found.sort();
        found
    }

    /// Fails the test unless the directory is still empty and no mount of
    /// the host lies below it.
    fn assert_untouched(&self, attack: &str) {
        let listing = self.listing();
        assert!(
            listing.is_empty(),
            "{attack}: the job changed the host directory {}: {listing:?}",
            self.path().display()
        );
        let mounts = mounts_below(self.path());
        assert!(
            mounts.is_empty(),
            "{attack}: host mounts appeared below {}: {mounts:?}",
            self.path().display()
        );
    }
}

/// Targets of the host's mounts at or below `dir`.
fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|target| target.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// Length and hash of an open file, read from its start, to tell whether
/// anything wrote to it.
fn file_digest(mut file: &fs::File) -> (u64, u64) {
    use std::io::{Read, Seek, SeekFrom};

    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .expect("read the runtime binary");
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write(&bytes);
    (bytes.len() as u64, hasher.finish())
}

/// The runtime's binary as it was before an attack, held open: a write
/// through /proc/PID/exe changes this file in place, while a rebuild of the
/// workspace replaces the path with a new file, which the guard ignores.
/// The probe only ever appends, so a write that got through leaves the
/// binary runnable.
struct BinaryGuard {
    path: PathBuf,
    file: fs::File,
    before: (u64, u64),
}

impl BinaryGuard {
    fn new() -> Self {
        let path = binary("corral");
        let file = fs::File::open(&path)
            .unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
        let before = file_digest(&file);
        BinaryGuard { path, file, before }
    }

    fn assert_unchanged(&self, attack: &str) {
        assert_eq!(
            file_digest(&self.file),
            self.before,
            "{attack}: {} changed (length, hash); rebuild it",
            self.path.display()
        );
    }
}

/// Runs the job to its end without requiring that it started: an attack may
/// make `corral run` fail, which is a safe outcome.
fn run_allowing_failure(sandbox: &Sandbox) -> Output {
    sandbox
        .corral()
        .args(["run", &sandbox.id, "--bundle"])
        .arg(sandbox.bundle())
        .output()
        .expect("run corral")
}

/// Mount targets and filesystem types from the probe's `mounts` output.
fn mount_targets(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            Some((fields.next()?.to_string(), fields.next()?.to_string()))
        })
        .collect()
}

#[test]
fn proc_symlink_to_host_path() {
    let test = "proc_symlink_to_host_path";
    if !require_root(test) {
        return;
    }
    let _serial = serial();
    let victim = Victim::new();
    // The image's /proc points at a host directory, once absolutely and once
    // through more `..` than the image is deep. Followed on the host, the
    // runtime would create the directory there and mount proc on it.
    let absolute = victim.path().join("proc-absolute");
    let relative = PathBuf::from("../../../../../../../../..")
        .join(victim.path().strip_prefix("/").expect("absolute temp dir"))
        .join("proc-relative");
    for (case, link) in [("absolute", &absolute), ("relative", &relative)] {
        let Some(image) = ImageDir::build(test) else {
            return;
        };
        fs::remove_dir(image.root().join("proc")).expect("remove /proc of the image");
        symlink(link, image.root().join("proc")).expect("plant /proc symlink");

        let job = format!(
            r#"{{"image": {}, "command": ["/bin/sh", "-c", "corral-probe mounts; corral-probe masked /proc/kcore /proc/keys /proc/timer_list /proc/acpi"]}}"#,
            image.image_json()
        );
        let sandbox = Sandbox::new(&format!("proc-link-{case}"), &job);
        let output = run_allowing_failure(&sandbox);
        victim.assert_untouched(&format!("/proc as a {case} symlink"));

        // Starting is not required, but a job that started must have proc
        // inside its own root, at the path the link names there, and the
        // masked paths must still be masked through the link.
        if !output.status.success() {
            eprintln!(
                "{test}: {case} link: corral refused the image: {}",
                describe(&output)
            );
            continue;
        }
        let text = stdout(&output);
        let inside = victim.path().join(format!("proc-{case}"));
        let mounts = mount_targets(&text);
        assert!(
            mounts
                .iter()
                .any(|(target, fstype)| Path::new(target) == inside && fstype == "proc"),
            "{case} link: proc is not mounted at {} inside the root: {text}",
            inside.display()
        );
        let results = outcomes(&text);
        for path in [
            "/proc/kcore",
            "/proc/keys",
            "/proc/timer_list",
            "/proc/acpi",
        ] {
            let outcome = results
                .get(path)
                .unwrap_or_else(|| panic!("{case} link: no result for {path}: {text}"));
            assert!(
                is_empty_or_failed(outcome),
                "{case} link: {path} is not masked: {text}"
            );
        }
    }
}

#[test]
fn bind_target_symlink_through_dotdot() {
    let test = "bind_target_symlink_through_dotdot";
    if !require_root(test) {
        return;
    }
    let _serial = serial();
    let Some(image) = ImageDir::build(test) else {
        return;
    };
    let victim = Victim::new();
    let source = tempfile::tempdir().expect("bind source");
    fs::write(source.path().join("token"), "from the bind source\n").expect("token");

    // `/up` climbs out of the image with `..`; `/abs` names the victim by
    // its absolute host path. Both must resolve inside the container's root.
    let relative = PathBuf::from("../../../../../../../../..")
        .join(victim.path().strip_prefix("/").expect("absolute temp dir"));
    symlink(&relative, image.root().join("up")).expect("plant /up");
    symlink(victim.path(), image.root().join("abs")).expect("plant /abs");

    let job = serde_json::json!({
        "image": {"path": image.root()},
        "command": ["/bin/sh", "-c", "corral-probe mounts; cat /up/sub/token"],
        "mounts": [
            {"type": "bind", "source": source.path(), "target": "/up/sub"},
            {"type": "tmpfs", "target": "/abs/scratch"}
        ]
    });
    let sandbox = Sandbox::new("bind-dotdot", &job.to_string());
    let output = run_allowing_failure(&sandbox);
    victim.assert_untouched("bind target through a `..` symlink");
    assert_eq!(
        fs::read_to_string(source.path().join("token")).expect("token"),
        "from the bind source\n"
    );
    let entries: Vec<_> = fs::read_dir(source.path())
        .expect("list bind source")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "the job changed the bind source: {entries:?}"
    );

    assert!(
        output.status.success(),
        "the job did not run: {}",
        describe(&output)
    );
    let text = stdout(&output);
    let mounts = mount_targets(&text);
    let bind_target = victim.path().join("sub");
    let tmpfs_target = victim.path().join("scratch");
    assert!(
        mounts
            .iter()
            .any(|(target, _)| Path::new(target) == bind_target),
        "the bind mount is not at {} inside the root: {text}",
        bind_target.display()
    );
    assert!(
        mounts
            .iter()
            .any(|(target, fstype)| Path::new(target) == tmpfs_target && fstype == "tmpfs"),
        "the tmpfs is not at {} inside the root: {text}",
        tmpfs_target.display()
    );
    assert!(
        text.contains("from the bind source\n"),
        "the bind source is not visible through /up/sub: {text}"
    );
}

/// Swaps two names in a directory with renameat2(RENAME_EXCHANGE) in a
/// loop on its own thread, until stopped or dropped.
struct Flipper {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Flipper {
    fn start(first: PathBuf, second: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let thread = {
            let stop = Arc::clone(&stop);
            let swaps = Arc::clone(&swaps);
            std::thread::spawn(move || {
                let first = CString::new(first.as_os_str().as_bytes()).expect("path");
                let second = CString::new(second.as_os_str().as_bytes()).expect("path");
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: both paths are NUL-terminated and outlive the
                    // call; renameat2 takes integers otherwise.
                    let result = unsafe {
                        libc::renameat2(
                            libc::AT_FDCWD,
                            first.as_ptr(),
                            libc::AT_FDCWD,
                            second.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        )
                    };
                    if result == 0 {
                        swaps.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Flipper {
            stop,
            swaps,
            thread: Some(thread),
        }
    }

    /// Stops the thread and returns how many swaps it made.
    fn finish(mut self) -> u64 {
        self.join();
        self.swaps.load(Ordering::Relaxed)
    }

    fn join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Flipper {
    fn drop(&mut self) {
        self.join();
    }
}

#[test]
fn mount_target_swapped_during_start() {
    let test = "mount_target_swapped_during_start";
    if !require_root(test) {
        return;
    }
    let _serial = serial();
    // A volume shared with another container, which swaps a directory on
    // the mount target's path with a symlink to a host directory while this
    // job starts (as in runc's CVE-2021-30465). A runtime that checks the
    // path and then uses it by name creates the target, or mounts, on the
    // host.
    const ROUNDS: usize = 40;
    let victim = Victim::new();
    let mut started = 0;
    let mut swaps = 0;
    for round in 0..ROUNDS {
        let shared = tempfile::tempdir().expect("shared volume");
        fs::set_permissions(shared.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::create_dir(shared.path().join("flip")).expect("flip dir");
        symlink(victim.path(), shared.path().join("alt")).expect("alt symlink");
        let job = serde_json::json!({
            "command": [probe(), "mounts"],
            "mounts": [
                {"type": "bind", "source": shared.path(), "target": "/shared"},
                {"type": "tmpfs", "target": "/shared/flip/sub"}
            ]
        });
        let sandbox = Sandbox::new(&format!("swap{round}"), &job.to_string());
        let flipper = Flipper::start(shared.path().join("flip"), shared.path().join("alt"));
        let output = run_allowing_failure(&sandbox);
        swaps += flipper.finish();
        victim.assert_untouched(&format!("round {round} of the mount target swap"));

        if output.status.success() {
            started += 1;
            let text = stdout(&output);
            // The directory may have moved to `alt` after it was opened,
            // or the symlink may have been followed inside the root: all
            // three places lie inside the container.
            let inside = [
                PathBuf::from("/shared/flip/sub"),
                PathBuf::from("/shared/alt/sub"),
                victim.path().join("sub"),
            ];
            let tmpfs_targets = mount_targets(&text)
                .into_iter()
                .filter(|(target, fstype)| {
                    fstype == "tmpfs" && inside.iter().any(|path| path == Path::new(target))
                })
                .count();
            assert_eq!(
                tmpfs_targets, 1,
                "round {round}: the tmpfs is not at one of {inside:?} inside the root: {text}"
            );
        }
    }
    eprintln!("{test}: {started} of {ROUNDS} jobs started, {swaps} swaps");
    assert!(swaps > 0, "the helper thread never swapped the target");
}

/// Descriptors from the probe's `fds` output above stderr, as (fd, target).
fn descriptors_above_stderr(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("fd=")?;
            let (fd, target) = rest.split_once(" target=")?;
            let fd: u32 = fd.parse().ok()?;
            (fd > 2).then(|| (fd, target.to_string()))
        })
        .collect()
}

#[test]
fn leaked_descriptors_reach_host() {
    let test = "leaked_descriptors_reach_host";
    if !require_root(test) {
        return;
    }
    let _serial = serial();
    // The job's stdin, stdout and stderr are the caller's by design. Any
    // other descriptor came from the runtime and could lead back to the
    // host's filesystem, through `..` of a directory or by reopening it.
    for init in [false, true] {
        let job = serde_json::json!({"command": [probe(), "fds"], "init": init});
        let sandbox = Sandbox::new(&format!("fds-init-{init}"), &job.to_string());
        let (output, record) = sandbox.run();
        let text = stdout(&output);
        assert_eq!(record.status, 0, "init {init}: {}", describe(&output));
        assert!(text.contains("fd=0 "), "init {init}: no fd listing: {text}");
        let leaked = descriptors_above_stderr(&text);
        assert!(
            leaked.is_empty(),
            "init {init}: the job inherited descriptors: {leaked:?}\n{text}"
        );
    }

    // PID 1 of a job with `init` is the runtime's minimal init: another
    // process of the job must not reopen its descriptors.
    let job = serde_json::json!({"command": [probe(), "fds-of", "1"], "init": true});
    let sandbox = Sandbox::new("fds-of-init", &job.to_string());
    let (output, record) = sandbox.run();
    let text = stdout(&output);
    assert_eq!(record.status, 0, "{}", describe(&output));
    let reopened: Vec<&str> = text
        .lines()
        .filter(|line| line.ends_with(" open=ok"))
        .filter(|line| {
            let fd = line
                .strip_prefix("fd=")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|fd| fd.parse::<u32>().ok());
            fd.is_some_and(|fd| fd > 2)
        })
        .collect();
    assert!(
        reopened.is_empty(),
        "the job reopened descriptors of the minimal init: {reopened:?}\n{text}"
    );

    // A process started by `corral exec` must not inherit the runtime's
    // descriptors either.
    let sandbox = Sandbox::new(
        "fds-exec",
        &serde_json::json!({"command": [probe(), "sleep", "30"]}).to_string(),
    );
    sandbox.run_detached();
    let output = sandbox
        .corral()
        .args(["exec", &sandbox.id, "--"])
        .arg(probe())
        .arg("fds")
        .output()
        .expect("run corral exec");
    let text = stdout(&output);
    assert!(output.status.success(), "exec: {}", describe(&output));
    let leaked = descriptors_above_stderr(&text);
    assert!(
        leaked.is_empty(),
        "the exec'd process inherited descriptors: {leaked:?}\n{text}"
    );
}

/// Asserts that the probe's `write-exe` attempts on a runtime process all
/// failed. A reachable binary must lie on a read-only mount; an unreachable
/// one (a non-dumpable process) must refuse even an O_PATH open.
fn assert_exe_writes_failed(attack: &str, text: &str, reachable: bool) {
    let results = outcomes(text);
    assert!(
        matches!(results.get("direct"), Some(Outcome::Errno(_))),
        "{attack}: opening /proc/PID/exe for writing did not fail: {text}"
    );
    if !reachable {
        assert_eq!(
            results.get("path"),
            Some(&Outcome::Errno(libc::EACCES)),
            "{attack}: the job reached the runtime process's binary: {text}"
        );
        return;
    }
    assert_eq!(
        results.get("exe_readonly"),
        Some(&Outcome::Value("true".to_string())),
        "{attack}: the runtime process does not run from a read-only mount: {text}"
    );
    assert!(
        matches!(results.get("reopen"), Some(Outcome::Errno(_))),
        "{attack}: reopening an O_PATH descriptor of /proc/PID/exe for writing did not fail: {text}"
    );
}

#[test]
fn runtime_binary_written_from_job() {
    let test = "runtime_binary_written_from_job";
    if !require_root(test) {
        return;
    }
    let _serial = serial();
    let runtime = BinaryGuard::new();

    // With `init`, PID 1 of the job is the runtime's minimal init, which
    // is not dumpable: its /proc/1/exe stays closed to the job.
    let job = serde_json::json!({"command": [probe(), "write-exe", "1"], "init": true});
    let sandbox = Sandbox::new("exe-init", &job.to_string());
    let (output, record) = sandbox.run();
    assert_eq!(record.status, 0, "{}", describe(&output));
    assert_exe_writes_failed("/proc/1/exe of the minimal init", &stdout(&output), false);
    runtime.assert_unchanged("/proc/1/exe of the minimal init");

    // A job whose command is /proc/self/exe makes the init execute the
    // runtime's own binary as the job. It blocks opening a FIFO planted as
    // the state file it reads, while a process exec'd into the job writes
    // its /proc/1/exe.
    let Some(image) = ImageDir::build(test) else {
        return;
    };
    image.install_libraries(&binary("corral"));
    fs::create_dir_all(image.root().join("hijack/victim")).expect("state dir");
    nix::unistd::mkfifo(
        &image.root().join("hijack/victim/state.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    let job = serde_json::json!({
        "image": {"path": image.root()},
        "command": ["/proc/self/exe", "--root", "/hijack", "state", "victim"]
    });
    let sandbox = Sandbox::new("exe-self", &job.to_string());
    sandbox.run_detached();
    let output = sandbox
        .corral()
        .args([
            "exec",
            &sandbox.id,
            "--",
            "/bin/corral-probe",
            "write-exe",
            "1",
        ])
        .output()
        .expect("run corral exec");
    assert!(output.status.success(), "exec: {}", describe(&output));
    assert_exe_writes_failed(
        "a job whose command is /proc/self/exe",
        &stdout(&output),
        true,
    );
    let deleted = sandbox.delete();
    assert!(deleted.status.success(), "delete: {}", describe(&deleted));
    runtime.assert_unchanged("a job whose command is /proc/self/exe");
}

#[test]
fn runtime_binary_hijacked_through_exec() {
    let test = "runtime_binary_hijacked_through_exec";
    if !require_root(test) {
        return;
    }
    let _serial = serial();
    let runtime = BinaryGuard::new();
    // PID 1 of the job waits for `corral exec` to run the runtime's binary
    // in the container (/proc/self/exe as the exec'd command), keeps that
    // process's /proc/PID/exe, kills it, and once no process executes the
    // binary any more (so ETXTBSY no longer protects it) opens it for
    // writing: the attack of CVE-2019-5736.
    let dir = "/tmp/corral-hijack";
    let job = serde_json::json!({"command": [probe(), "hijack-exe", dir, "60"]});
    let sandbox = Sandbox::new("hijack", &job.to_string());
    let state = sandbox.run_detached();
    let upper = state
        .overlay_dir
        .clone()
        .expect("overlay dir in the state")
        .join("upper")
        .join(dir.trim_start_matches('/'));
    assert!(
        wait_until(Duration::from_secs(20), || upper
            .join("victim/state.json")
            .exists()),
        "the job never planted its FIFO at {}",
        upper.display()
    );

    let output = sandbox
        .corral()
        .args(["exec", "--detach", &sandbox.id, "--", "/proc/self/exe"])
        .args(["--root", dir, "state", "victim"])
        .output()
        .expect("run corral exec");
    assert!(output.status.success(), "exec: {}", describe(&output));
    assert!(
        wait_until(Duration::from_secs(60), || upper.join("result").exists()),
        "the job never wrote {}",
        upper.join("result").display()
    );
    let text = fs::read_to_string(upper.join("result")).expect("result");
    let results = outcomes(&text);
    assert!(
        matches!(results.get("found"), Some(Outcome::Value(_))),
        "the job never saw the runtime's binary run: {text}"
    );
    assert_eq!(
        results.get("exe_readonly"),
        Some(&Outcome::Value("true".to_string())),
        "the exec'd runtime did not run from a read-only mount: {text}"
    );
    assert_eq!(
        results.get("gone"),
        Some(&Outcome::Value("true".to_string())),
        "the exec'd runtime process did not end: {text}"
    );
    assert!(
        matches!(results.get("reopen"), Some(Outcome::Errno(_))),
        "reopening the held /proc/PID/exe for writing did not fail: {text}"
    );
    runtime.assert_unchanged("the exec hijack");
}

/// System calls the default profile or capability set must refuse, from
/// the probe's `privileged-call` list.
const PRIVILEGED_CALLS: [&str; 14] = [
    "mount",
    "umount2",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "keyctl",
    "add_key",
    "bpf",
    "perf_event_open",
    "open_by_handle_at",
    "unshare",
    "swapon",
    "settimeofday",
];

#[test]
fn privileged_syscalls_from_job() {
    let test = "privileged_syscalls_from_job";
    if !require_root(test) {
        return;
    }
    let _serial = serial();
    let modules_before = fs::read_to_string("/proc/modules").unwrap_or_default();
    let swaps_before = fs::read_to_string("/proc/swaps").unwrap_or_default();
    let script = PRIVILEGED_CALLS
        .iter()
        .map(|call| format!("{} privileged-call {call}", probe()))
        .collect::<Vec<_>>()
        .join("; ");
    let job = serde_json::json!({"command": ["/bin/sh", "-c", script]});
    let sandbox = Sandbox::new("syscalls", &job.to_string());
    let (output, record) = sandbox.run();
    let text = stdout(&output);
    assert_eq!(record.status, 0, "{}", describe(&output));
    let results = outcomes(&text);
    for call in PRIVILEGED_CALLS {
        assert_eq!(
            results.get(call),
            Some(&Outcome::Errno(EPERM)),
            "{call} was not refused with EPERM: {text}"
        );
    }
    assert_eq!(
        fs::read_to_string("/proc/modules").unwrap_or_default(),
        modules_before,
        "the host's loaded modules changed"
    );
    assert_eq!(
        fs::read_to_string("/proc/swaps").unwrap_or_default(),
        swaps_before,
        "the host's swap areas changed"
    );

    // The same reboot call reaches the kernel's magic check (EINVAL) once
    // the job has CAP_SYS_BOOT, which also lifts the profile's rule: the
    // EPERM above came from the sandbox, not from the probe.
    let job = serde_json::json!({
        "command": [probe(), "privileged-call", "reboot"],
        "cap_add": ["CAP_SYS_BOOT"]
    });
    let sandbox = Sandbox::new("syscalls-boot", &job.to_string());
    let (output, record) = sandbox.run();
    assert_eq!(record.status, 0, "{}", describe(&output));
    assert_eq!(
        outcomes(&stdout(&output)).get("reboot"),
        Some(&Outcome::Errno(libc::EINVAL)),
        "reboot with a wrong magic and CAP_SYS_BOOT: {}",
        describe(&output)
    );
}

/// Major and minor number of the block device holding the host's `/`, or
/// of the first disk in /sys/block when `/` has no block device.
fn host_root_disk() -> Option<(u64, u64)> {
    let device = fs::metadata("/").ok()?.dev();
    if libc::major(device) != 0 {
        return Some((libc::major(device) as u64, libc::minor(device) as u64));
    }
    let mut disks: Vec<PathBuf> = fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    disks.sort();
    disks.into_iter().find_map(|disk| {
        let text = fs::read_to_string(disk.join("dev")).ok()?;
        let (major, minor) = text.trim().split_once(':')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    })
}

/// A loop device over a temp file holding [`LOOP_SECRET`], detached on drop.
struct LoopDevice {
    path: PathBuf,
    _backing: tempfile::NamedTempFile,
}

const LOOP_SECRET: &[u8] = b"corral-secret-disk";

impl LoopDevice {
    /// Attaches a new loop device with `losetup`, or returns why it failed.
    fn attach() -> Result<Self, String> {
        let mut backing = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut backing, LOOP_SECRET).map_err(|e| e.to_string())?;
        backing
            .as_file()
            .set_len(1 << 20)
            .map_err(|e| e.to_string())?;
        let output = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(backing.path())
            .output()
            .map_err(|e| format!("failed to run losetup: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "losetup failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        Ok(LoopDevice {
            path,
            _backing: backing,
        })
    }

    fn numbers(&self) -> (u64, u64) {
        let device = fs::metadata(&self.path).expect("loop device").rdev();
        (libc::major(device) as u64, libc::minor(device) as u64)
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

/// Runs the probe's `raw-device` against MAJOR:MINOR in a default job and
/// asserts that the device could not be opened.
fn assert_raw_device_closed(name: &str, major: u64, minor: u64) {
    let job = serde_json::json!({
        "command": [probe(), "raw-device", major.to_string(), minor.to_string()]
    });
    let sandbox = Sandbox::new(name, &job.to_string());
    let (output, record) = sandbox.run();
    let text = stdout(&output);
    assert_eq!(record.status, 0, "{}", describe(&output));
    let results = outcomes(&text);
    assert!(
        !matches!(results.get("open"), Some(Outcome::Value(_))),
        "{name}: the job opened block device {major}:{minor}: {text}"
    );
    assert!(
        !matches!(results.get("read"), Some(Outcome::Value(_))),
        "{name}: the job read block device {major}:{minor}: {text}"
    );
    assert!(
        matches!(results.get("mknod"), Some(Outcome::Errno(_)))
            || results.get("open") == Some(&Outcome::Errno(EPERM)),
        "{name}: expected mknod to fail or open to fail with EPERM: {text}"
    );
}

#[test]
fn raw_block_device_from_job() {
    let test = "raw_block_device_from_job";
    if !require_root(test) {
        return;
    }
    let _serial = serial();
    // The job keeps CAP_MKNOD (Docker's default set), so it may create a
    // node for any device. Opening one must fail, because the device cgroup
    // allows only the standard devices.
    match host_root_disk() {
        Some((major, minor)) => assert_raw_device_closed("raw-root-disk", major, minor),
        None => eprintln!("{test}: the host has no block device for `/`"),
    }

    // Some hosts refuse even their own root a new node for the root disk,
    // which would hide a missing defence. A loop device that the test
    // itself can read shows the job's refusal comes from the sandbox.
    let device = match LoopDevice::attach() {
        Ok(device) => device,
        Err(reason) => {
            eprintln!("SKIP {test} (loop device part): {reason}");
            return;
        }
    };
    let mut first = vec![0u8; LOOP_SECRET.len()];
    std::io::Read::read_exact(
        &mut fs::File::open(&device.path).expect("open the loop device on the host"),
        &mut first,
    )
    .expect("read the loop device on the host");
    assert_eq!(first, LOOP_SECRET, "the host cannot read its loop device");
    let (major, minor) = device.numbers();
    assert_raw_device_closed("raw-loop", major, minor);
    assert!(
        !Path::new("/dev/corral-probe-disk").exists(),
        "the device node appeared in the host's /dev"
    );
}

#[test]
fn masked_paths_read_from_job() {
    let test = "masked_paths_read_from_job";
    if !require_root(test) {
        return;
    }
    let _serial = serial();
    let mut command = vec![probe(), "masked".to_string()];
    command.extend(MASKED_PATHS.iter().map(|p| p.to_string()));
    let job = serde_json::json!({"command": command});
    let sandbox = Sandbox::new("masked", &job.to_string());
    let (output, record) = sandbox.run();
    let text = stdout(&output);
    assert_eq!(record.status, 0, "{}", describe(&output));
    let results = outcomes(&text);
    for path in MASKED_PATHS {
        let outcome = results
            .get(path)
            .unwrap_or_else(|| panic!("no result for {path}: {text}"));
        assert!(
            is_empty_or_failed(outcome),
            "{path} is readable in the job: {outcome:?}\n{text}"
        );
    }
}

#[test]
fn readonly_proc_written_from_job() {
    let test = "readonly_proc_written_from_job";
    if !require_root(test) {
        return;
    }
    let _serial = serial();
    // core_pattern is the classic target: a `|program` written there runs
    // as the host's root on the next crash. The probe only opens for writing, which a
    // read-only mount refuses with EROFS before anything is written.
    // Kernels built without magic SysRq have no /proc/sysrq-trigger.
    let files: Vec<&str> = [
        "/proc/sys/kernel/core_pattern",
        "/proc/sys/vm/drop_caches",
        "/proc/sysrq-trigger",
    ]
    .into_iter()
    .filter(|file| Path::new(file).exists())
    .collect();
    for file in &files {
        assert!(
            READONLY_PATHS.iter().any(|dir| file.starts_with(dir)),
            "{file} is not below a read-only path"
        );
    }

    let core_pattern = fs::read_to_string("/proc/sys/kernel/core_pattern").expect("core_pattern");
    let mut command = vec![probe(), "open-write".to_string()];
    command.extend(files.iter().map(|f| f.to_string()));
    let job = serde_json::json!({"command": command});
    let sandbox = Sandbox::new("readonly-proc", &job.to_string());
    let (output, record) = sandbox.run();
    let text = stdout(&output);
    assert_eq!(record.status, 0, "{}", describe(&output));

    let results = outcomes(&text);
    for file in &files {
        assert_eq!(
            results.get(*file),
            Some(&Outcome::Errno(libc::EROFS)),
            "{file} opened for writing in the job: {text}"
        );
    }
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/core_pattern").expect("core_pattern"),
        core_pattern,
        "the host's core_pattern changed"
    );
}

#[test]
fn setuid_binary_with_no_new_privs() {
    let test = "setuid_binary_with_no_new_privs";
    if !require_root(test) {
        return;
    }
    let _serial = serial();
    let Some(image) = ImageDir::build(test) else {
        return;
    };
    image.install_probe("bin/setuid-probe");
    let helper = image.root().join("bin/setuid-probe");
    std::os::unix::fs::chown(&helper, Some(0), Some(0)).expect("chown helper");
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o4755)).expect("setuid helper");

    let uid_line = |no_new_privileges: bool| -> String {
        let job = serde_json::json!({
            "image": {"path": image.root()},
            "command": ["/bin/setuid-probe", "status"],
            "user": "1000:1000",
            "no_new_privileges": no_new_privileges
        });
        let sandbox = Sandbox::new(&format!("setuid-nnp-{no_new_privileges}"), &job.to_string());
        let (output, record) = sandbox.run();
        assert_eq!(record.status, 0, "{}", describe(&output));
        let text = stdout(&output);
        outcomes(&text)
            .get("Uid")
            .and_then(|outcome| match outcome {
                Outcome::Value(value) => Some(value.clone()),
                Outcome::Errno(_) => None,
            })
            .unwrap_or_else(|| panic!("no Uid line: {text}"))
    };
    // Real, effective, saved and filesystem UIDs.
    assert_eq!(
        uid_line(true),
        "1000 1000 1000 1000",
        "the setuid-root helper gained root under no_new_privs"
    );
    // Without no_new_privs the same helper becomes root, so the image's
    // setuid bit works and the first check means something.
    assert_eq!(uid_line(false), "1000 0 0 0");
}

#[test]
fn user_namespace_root_writes_host_file() {
    let test = "user_namespace_root_writes_host_file";
    if !require_root(test) {
        return;
    }
    let _serial = serial();
    let Some(image) = ImageDir::build(test) else {
        return;
    };
    let make_volume = || {
        let volume = tempfile::tempdir().expect("volume");
        fs::set_permissions(volume.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let secret = volume.path().join("secret");
        fs::write(&secret, "host root only\n").expect("secret");
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod secret");
        volume
    };
    let job = |volume: &Path, user_namespace: bool| {
        let mut job = serde_json::json!({
            "image": {"path": image.root()},
            "command": ["/bin/sh", "-c",
                "echo secret; corral-probe write /data/secret; \
                 echo new; corral-probe write /data/new; \
                 echo identity; corral-probe status"],
            "mounts": [{"type": "bind", "source": volume, "target": "/data"}]
        });
        if user_namespace {
            job["user_namespace"] =
                serde_json::json!({"uid": 100000, "gid": 100000, "size": 65536});
        }
        job.to_string()
    };
    let results_of = |text: &str| -> (String, String) {
        let mut lines = text.lines();
        let mut after = |label: &str| {
            lines
                .by_ref()
                .skip_while(|line| *line != label)
                .nth(1)
                .unwrap_or_default()
                .to_string()
        };
        (after("secret"), after("new"))
    };

    // Root of the job's user namespace is host UID 100000: a root-owned
    // 0600 file and a root-owned directory of the host are closed to it.
    let volume = make_volume();
    let sandbox = Sandbox::new("userns", &job(volume.path(), true));
    let (output, record) = sandbox.run();
    let text = stdout(&output);
    assert_eq!(record.status, 0, "{}", describe(&output));
    assert!(
        text.contains("Uid=0 0 0 0"),
        "the job is not root inside its namespace: {text}"
    );
    let (secret, new) = results_of(&text);
    assert_eq!(secret, format!("errno={}", libc::EACCES), "{text}");
    assert_eq!(new, format!("errno={}", libc::EACCES), "{text}");
    assert_eq!(
        fs::read_to_string(volume.path().join("secret")).expect("secret"),
        "host root only\n",
        "the host's root-owned file changed"
    );
    assert!(
        !volume.path().join("new").exists(),
        "the job created a file in a root-owned host directory"
    );

    // Without a user namespace the job's root is the host's root, and the
    // same writes succeed: the namespace made the difference above.
    let volume = make_volume();
    let sandbox = Sandbox::new("no-userns", &job(volume.path(), false));
    let (output, record) = sandbox.run();
    let text = stdout(&output);
    assert_eq!(record.status, 0, "{}", describe(&output));
    assert_eq!(
        results_of(&text),
        ("ok".to_string(), "ok".to_string()),
        "{text}"
    );
}
