//! The cgroup library against the kernel on a cgroup v1 (or hybrid) host.
//!
//! Each test creates its own cgroup below the test process's cgroup, named
//! `corral-test-PID-CASE`, and a guard kills its processes and removes it
//! also when an assertion fails. Without root, or on a pure v2 host, every
//! test prints a SKIP line and returns.

use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use corral_runtime::cgroups::{Cgroup, CgroupPaths, Hierarchy, Version};
use oci_spec::runtime::LinuxResources;
use serde_json::json;

/// Returns the hierarchy, or `None` after printing why the test is skipped.
fn v1_hierarchy(test: &str) -> Option<Hierarchy> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP {test}: needs root to create cgroups");
        return None;
    }
    let hierarchy = Hierarchy::detect().expect("detecting the cgroup hierarchies");
    if hierarchy.version() != Version::V1 {
        eprintln!("SKIP {test}: the host's limits go through cgroup v2, not v1");
        return None;
    }
    Some(hierarchy)
}

/// A test's cgroups and child processes, killed and removed on drop.
struct Guard<'a> {
    hierarchy: &'a Hierarchy,
    /// The top directory, `corral-test-PID-CASE`, relative to the test's cgroup.
    top: String,
    cgroups: Vec<Cgroup>,
    children: Vec<Child>,
}

impl<'a> Guard<'a> {
    fn new(hierarchy: &'a Hierarchy, case: &str) -> Guard<'a> {
        Guard {
            hierarchy,
            top: format!("corral-test-{}-{case}", std::process::id()),
            cgroups: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Creates `TOP/relative`, or `TOP` itself for an empty `relative`.
    fn create(&mut self, relative: &str) -> Cgroup {
        let path = match relative {
            "" => self.top.clone(),
            relative => format!("{}/{relative}", self.top),
        };
        let cgroup = self
            .hierarchy
            .create(&path)
            .unwrap_or_else(|error| panic!("creating cgroup {path}: {error:#?}"));
        self.cgroups.push(cgroup.clone());
        cgroup
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The cgroups were created parents first, so they go in reverse.
        for cgroup in self.cgroups.iter().rev() {
            if let Err(error) = cgroup.kill_all().and_then(|()| cgroup.remove()) {
                eprintln!("cleanup of cgroup {}: {error}", cgroup.id());
            }
        }
        if let Err(error) = self.hierarchy.remove_if_empty(&self.top) {
            eprintln!("cleanup of cgroup {}: {error}", self.top);
        }
    }
}

fn v1_dir<'c>(cgroup: &'c Cgroup, controller: &str) -> &'c Path {
    match cgroup.paths() {
        CgroupPaths::V1 { controllers } => controllers
            .get(controller)
            .unwrap_or_else(|| panic!("no {controller} directory in {controllers:?}")),
        other => panic!("expected v1 paths, got {other:?}"),
    }
}

fn read_trimmed(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|error| panic!("reading {path:?}: {error}"));
    text.trim().to_string()
}

fn resources(value: serde_json::Value) -> LinuxResources {
    serde_json::from_value(value).expect("valid linux.resources JSON")
}

/// Starts `sh -c script` with a piped stdin, for scripts that begin with
/// `read line` so that they wait until the test has moved them into a cgroup.
fn spawn_waiting_shell(script: &str) -> Child {
    Command::new("/bin/sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .spawn()
        .expect("starting /bin/sh")
}

fn release(child: &mut Child) {
    let stdin = child.stdin.as_mut().expect("piped stdin");
    stdin
        .write_all(b"go\n")
        .expect("writing to the shell's stdin");
    stdin.flush().expect("flushing the shell's stdin");
}

#[test]
fn limits_read_back_from_kernel() {
    let Some(hierarchy) = v1_hierarchy("limits_read_back_from_kernel") else {
        return;
    };
    let mut guard = Guard::new(&hierarchy, "limits");
    let cgroup = guard.create("web");

    let spec = json!({
        "memory": {"limit": 67108864, "swap": 134217728, "reservation": 33554432},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        "pids": {"limit": 32}
    });
    cgroup.apply(&resources(spec)).expect("applying limits");

    let memory = v1_dir(&cgroup, "memory");
    assert_eq!(
        read_trimmed(&memory.join("memory.limit_in_bytes")),
        "67108864"
    );
    let memsw = memory.join("memory.memsw.limit_in_bytes");
    if memsw.exists() {
        assert_eq!(read_trimmed(&memsw), "134217728");
    }
    assert_eq!(
        read_trimmed(&memory.join("memory.soft_limit_in_bytes")),
        "33554432"
    );

    let cpu = v1_dir(&cgroup, "cpu");
    assert_eq!(read_trimmed(&cpu.join("cpu.shares")), "512");
    assert_eq!(read_trimmed(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read_trimmed(&cpu.join("cpu.cfs_quota_us")), "50000");

    let pids = v1_dir(&cgroup, "pids");
    assert_eq!(read_trimmed(&pids.join("pids.max")), "32");

    // A new cpuset directory got its parent's CPUs and memory nodes.
    let cpuset = v1_dir(&cgroup, "cpuset");
    let parent = cpuset.parent().expect("cpuset directory has a parent");
    let cpus = read_trimmed(&cpuset.join("cpuset.cpus"));
    assert!(!cpus.is_empty(), "cpuset.cpus of {cpuset:?} is empty");
    assert_eq!(cpus, read_trimmed(&parent.join("cpuset.cpus")));
    assert_eq!(
        read_trimmed(&cpuset.join("cpuset.mems")),
        read_trimmed(&parent.join("cpuset.mems"))
    );
}

#[test]
fn kernel_rejects_invalid_value() {
    let Some(hierarchy) = v1_hierarchy("kernel_rejects_invalid_value") else {
        return;
    };
    let mut guard = Guard::new(&hierarchy, "invalid");
    let cgroup = guard.create("web");

    // The kernel requires a CFS quota of at least 1000us.
    let error = cgroup
        .apply(&resources(json!({"cpu": {"quota": 10, "period": 100000}})))
        .expect_err("a 10us quota was accepted");
    let message = error.to_string();
    assert!(message.starts_with("writing \"10\" to "), "{message}");
    assert!(message.ends_with("/cpu.cfs_quota_us"), "{message}");
}

#[test]
fn processes_freeze_and_thaw() {
    let Some(hierarchy) = v1_hierarchy("processes_freeze_and_thaw") else {
        return;
    };
    let mut guard = Guard::new(&hierarchy, "freeze");
    let cgroup = guard.create("web");
    let child = Command::new("sleep")
        .arg("100")
        .spawn()
        .expect("starting sleep");
    let pid = child.id() as i32;
    guard.children.push(child);

    cgroup.add_process(pid).expect("adding the child");
    assert_eq!(cgroup.processes().unwrap(), [pid]);
    let membership = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        membership.contains(&format!(":memory:{}\n", cgroup.id())),
        "child is not in memory cgroup {}: {membership}",
        cgroup.id()
    );

    let state = v1_dir(&cgroup, "freezer").join("freezer.state");
    cgroup.freeze().expect("freezing");
    assert_eq!(read_trimmed(&state), "FROZEN");
    cgroup.thaw().expect("thawing");
    assert_eq!(read_trimmed(&state), "THAWED");
}

#[test]
fn kill_all_stops_fork_loop() {
    let Some(hierarchy) = v1_hierarchy("kill_all_stops_fork_loop") else {
        return;
    };
    let mut guard = Guard::new(&hierarchy, "kill");
    let cgroup = guard.create("web");
    // The pids limit bounds the fork loop if the test fails.
    cgroup
        .apply(&resources(json!({"pids": {"limit": 256}})))
        .expect("applying the pids limit");

    // Every 20ms the shell starts another shell, which itself starts a
    // `sleep 30` every 20ms, so the cgroup gains processes quadratically.
    let script = "read line; \
        while :; do sh -c 'while :; do sleep 30 & sleep 0.02; done' & sleep 0.02; done";
    let mut child = spawn_waiting_shell(script);
    let pid = child.id() as i32;
    cgroup.add_process(pid).expect("adding the shell");
    release(&mut child);
    thread::sleep(Duration::from_millis(400));
    let before = cgroup.processes().unwrap();
    assert!(
        before.len() > 10,
        "the fork loop started only {} processes",
        before.len()
    );

    cgroup.kill_all().expect("killing every process");
    let status = child.wait().expect("waiting for the shell");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "shell ended with {status}"
    );
    assert_eq!(cgroup.processes().unwrap(), Vec::<i32>::new());
}

/// Forks a child that waits for a byte on a pipe, then touches `bytes` of
/// fresh anonymous memory and exits 0. Returns its PID and the pipe's
/// write end.
fn fork_memory_hog(bytes: usize) -> (i32, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
    let result = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(result, 0, "pipe2: {}", std::io::Error::last_os_error());

    // SAFETY: the child runs only async-signal-safe calls (read, mmap,
    // _exit) and plain stores to memory it mapped itself, so locks held by
    // other threads of this multi-threaded test process cannot deadlock it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: the pipe's read end is open in the child and the buffer
        // is one byte. Every page written lies inside the private anonymous
        // mapping that mmap returned.
        unsafe {
            let mut byte = 0u8;
            // A closed pipe without a byte means the parent gave up.
            if libc::read(fds[0], (&mut byte as *mut u8).cast(), 1) != 1 {
                libc::_exit(3);
            }
            let memory = libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if memory == libc::MAP_FAILED {
                libc::_exit(2);
            }
            let memory = memory.cast::<u8>();
            for offset in (0..bytes).step_by(4096) {
                memory.add(offset).write_volatile(1);
            }
            libc::_exit(0);
        }
    }

    // SAFETY: fds[0] is the read end this process owns and no longer needs,
    // and fds[1] is the write end, whose ownership moves into the File.
    let writer = unsafe {
        libc::close(fds[0]);
        <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1])
    };
    (pid, writer)
}

#[test]
fn oom_kill_is_counted() {
    let Some(hierarchy) = v1_hierarchy("oom_kill_is_counted") else {
        return;
    };
    let mut guard = Guard::new(&hierarchy, "oom");
    let cgroup = guard.create("web");
    let limit = 32 << 20;
    // memory+swap equals memory, so the child cannot escape into swap.
    cgroup
        .apply(&resources(
            json!({"memory": {"limit": limit, "swap": limit}}),
        ))
        .expect("applying the memory limit");
    assert_eq!(cgroup.oom_kills().unwrap(), 0);

    let (pid, mut writer) = fork_memory_hog(256 << 20);
    // Closing the pipe without a byte makes the child exit before it
    // allocates anything outside the cgroup.
    if let Err(error) = cgroup.add_process(pid) {
        drop(writer);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        panic!("adding the child: {error}");
    }
    writer.write_all(b"x").expect("releasing the child");
    drop(writer);
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);

    assert_eq!(
        status,
        Ok(nix::sys::wait::WaitStatus::Signaled(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
            false
        )),
        "the child was not OOM-killed"
    );
    let kills = cgroup.oom_kills().unwrap();
    assert!(kills >= 1, "oom_kills() returned {kills}");
}

#[test]
fn remove_leaves_nothing() {
    let Some(hierarchy) = v1_hierarchy("remove_leaves_nothing") else {
        return;
    };
    let mut guard = Guard::new(&hierarchy, "remove");
    let web = guard.create("web");
    let inner = guard.create("web/inner");
    let child = Command::new("sleep")
        .arg("100")
        .spawn()
        .expect("starting sleep");
    inner
        .add_process(child.id() as i32)
        .expect("adding the child");
    guard.children.push(child);

    let dirs: Vec<PathBuf> = match web.paths() {
        CgroupPaths::V1 { controllers } => controllers.values().cloned().collect(),
        other => panic!("expected v1 paths, got {other:?}"),
    };
    web.kill_all().expect("killing every process");
    web.remove().expect("removing the cgroup");
    for dir in &dirs {
        assert!(!dir.exists(), "{dir:?} is still there");
    }

    hierarchy
        .remove_if_empty(&guard.top)
        .expect("removing the empty parent");
    for dir in &dirs {
        let parent = dir.parent().unwrap();
        assert!(!parent.exists(), "{parent:?} is still there");
    }
}
