//! The container's init: the cloned child that builds the container from
//! inside its new namespaces, waits for `start`, and executes the process.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{chdir, execve, fork, sethostname, ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::hooks::{self, HookPoint};
use super::sync;
use crate::job::annotations;
use crate::rootfs;

/// Everything the init needs, prepared by the runtime before the clone.
pub(crate) struct InitContext {
    pub spec: Spec,
    pub rootfs: PathBuf,
    pub overlay: Option<Overlay>,
    /// The exec FIFO in the runtime's state directory, opened with O_PATH by
    /// the runtime: the state directory is outside the new root and may be
    /// closed to a container root mapped by a user namespace. The init
    /// reopens it for writing through /proc/self/fd.
    pub exec_fifo: Option<OwnedFd>,
    /// Open for writing when the minimal init runs; see [`Process::main_status`].
    pub main_status: Option<OwnedFd>,
    /// Whether the init is in a new user namespace, whose maps the runtime
    /// writes before it sends GO.
    pub new_user_namespace: bool,
    pub sync: UnixStream,
    /// Connection to the client's console socket, when the process has a terminal.
    pub console: Option<UnixStream>,
    /// Namespaces to join instead of creating, as (type, opened path).
    pub joins: Vec<(CloneFlags, OwnedFd)>,
    pub new_cgroup_namespace: bool,
    /// Set for a new time namespace: the lines for
    /// `/proc/self/timens_offsets`, possibly empty.
    pub time_offsets: Option<String>,
    pub new_network_namespace: bool,
}

pub(crate) struct Overlay {
    /// The overlay already mounted by the runtime, detached, for a container
    /// with a user namespace.
    pub mount_fd: Option<OwnedFd>,
    pub lower_dirs: String,
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// An init step that failed, reported to the runtime as text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InitError {
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error("failed to {operation}")]
    Sys {
        operation: String,
        source: nix::Error,
    },
    #[error("failed to {operation}")]
    Io {
        operation: String,
        source: std::io::Error,
    },
    #[error("invalid process: {0}")]
    Process(String),
    #[error(transparent)]
    Executable(#[from] super::executable::ExecutableError),
}

fn sys(operation: impl Into<String>) -> impl FnOnce(nix::Error) -> InitError {
    let operation = operation.into();
    move |source| InitError::Sys { operation, source }
}

/// Runs the init and never returns: it either executes the process or exits.
pub(crate) fn run(mut context: InitContext) -> ! {
    match prepare(&mut context) {
        Ok(prepared) => {
            sync::send_ready(&mut context.sync);
            drop(context.sync);
            wait_for_start(prepared.fifo);
            if let Some(state_json) = &prepared.state_json {
                let running =
                    state_json.replace("\"status\":\"creating\"", "\"status\":\"running\"");
                if let Err(error) =
                    hooks::run_hooks(&prepared.spec, HookPoint::StartContainer, &running)
                {
                    eprintln!("corral: {error}");
                    // SAFETY: ends this process without running the
                    // runtime's destructors, as a forked child must.
                    unsafe { libc::_exit(1) }
                }
            }
            if let Err(error) = super::seccomp::install(&prepared.late_seccomp) {
                eprintln!("corral: {error}");
                // SAFETY: ends this process without running the runtime's
                // destructors, as a forked child must.
                unsafe { libc::_exit(1) }
            }
            execute(prepared.process)
        }
        Err(InitError::Executable(error)) => {
            sync::send_executable_failure(&mut context.sync, &error);
            // SAFETY: as below, a forked child that failed ends without
            // running the runtime's atexit handlers and destructors.
            unsafe { libc::_exit(1) }
        }
        Err(error) => {
            sync::send_failure(&mut context.sync, &error_chain(&error));
            // SAFETY: _exit only ends this process; skipping the atexit
            // handlers and destructors of the runtime's copy of the address
            // space is what a forked child that failed must do.
            unsafe { libc::_exit(1) }
        }
    }
}

/// Formats an error with its sources, as `outer: inner: root cause`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The process to execute, resolved while the init still had privileges.
pub(crate) struct Process {
    pub path: CString,
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    pub with_init: bool,
    /// File in the runtime's state directory where the minimal init records
    /// the signal that ended the main process.
    pub main_status: Option<OwnedFd>,
}

struct Prepared {
    fifo: OwnedFd,
    /// Seccomp filters to install after the start handshake.
    late_seccomp: Vec<seccompiler::BpfProgram>,
    process: Process,
    spec: Spec,
    /// The state passed to hooks, when the spec has any.
    state_json: Option<String>,
}

fn prepare(context: &mut InitContext) -> Result<Prepared, InitError> {
    let mut go = [0u8; 1];
    std::io::Read::read_exact(&mut context.sync, &mut go).map_err(|source| InitError::Io {
        operation: "wait for the runtime".to_string(),
        source,
    })?;

    for (kind, fd) in &context.joins {
        setns(fd, *kind).map_err(sys(format!("join namespace {kind:?}")))?;
    }
    if context.new_cgroup_namespace {
        unshare(CloneFlags::CLONE_NEWCGROUP).map_err(sys("create the cgroup namespace"))?;
    }
    if let Some(offsets) = &context.time_offsets {
        create_time_namespace(offsets)?;
    }

    let spec = &context.spec;
    let linux = spec.linux().clone().unwrap_or_default();
    let propagation = rootfs::RootPropagation::parse(linux.rootfs_propagation().as_deref())?;
    propagation.isolate()?;

    // In a new user namespace the init still has the host's UID 0 until
    // become_namespace_root, so as the owner it may walk the runtime's
    // root-only directories; the container's root will not. The overlay is
    // attached by path now, and everything after reaches the root through
    // /proc/self/cwd.
    match &context.overlay {
        Some(Overlay {
            mount_fd: Some(mount_fd),
            ..
        }) => {
            rootfs::attach_mount(mount_fd, &context.rootfs)?;
            context.rootfs = PathBuf::from("/proc/self/cwd");
        }
        Some(overlay) => rootfs::mount_overlay(
            &overlay.lower_dirs,
            &overlay.upper,
            &overlay.work,
            &context.rootfs,
        )?,
        None => rootfs::bind_rootfs(&context.rootfs)?,
    }
    if context.new_user_namespace {
        become_namespace_root()?;
    }

    let mounts = spec.mounts().clone().unwrap_or_default();
    for entry in &mounts {
        rootfs::mount_entry(&context.rootfs, entry)?;
    }
    let dev_is_bound = mounts
        .iter()
        .any(|m| m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("bind"));
    if !dev_is_bound {
        // A user namespace may not create device nodes, so the host's nodes
        // are bound in instead.
        rootfs::create_devices(
            &context.rootfs,
            linux.devices().as_deref().unwrap_or_default(),
            context.new_user_namespace,
        )?;
    }

    // createRuntime hooks run in the runtime's namespaces once the
    // container's exist; createContainer hooks run here, in the container's
    // mount namespace before pivot_root, so host paths still resolve.
    let wants_hooks = [
        HookPoint::Prestart,
        HookPoint::CreateRuntime,
        HookPoint::CreateContainer,
        HookPoint::StartContainer,
    ]
    .into_iter()
    .any(|point| hooks::has_hooks(spec, point));
    let mut state_json = None;
    if wants_hooks {
        let json = sync::request_hooks(&mut context.sync).map_err(|source| InitError::Io {
            operation: "wait for the runtime's hooks".to_string(),
            source,
        })?;
        hooks::run_hooks(spec, HookPoint::CreateContainer, &json)
            .map_err(|error| InitError::Process(error.to_string()))?;
        state_json = Some(json);
    }

    let fifo = context.exec_fifo.take().ok_or_else(|| {
        InitError::Process("the exec FIFO was not passed to the init".to_string())
    })?;

    // The container's own proc mount lacks binfmt_misc, so its handlers
    // are read from the host's before pivot_root.
    let other_formats = super::executable::binfmt_misc_handlers_enabled();
    rootfs::pivot_into(&context.rootfs)?;

    let network_mode = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(annotations::NETWORK).cloned());
    if context.new_network_namespace && network_mode.as_deref() != Some("none") {
        bring_loopback_up()?;
    }
    if let Some(hostname) = spec.hostname() {
        sethostname(hostname).map_err(sys(format!("set hostname {hostname:?}")))?;
    }
    if let Some(domain) = spec.domainname() {
        // SAFETY: the pointer and length describe the live `domain` string.
        let result = unsafe { libc::setdomainname(domain.as_ptr().cast(), domain.len()) };
        if result != 0 {
            return Err(sys(format!("set domain name {domain:?}"))(
                nix::Error::last(),
            ));
        }
    }
    if let Some(sysctls) = linux.sysctl() {
        for (key, value) in sysctls {
            let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
            fs::write(&path, value).map_err(|source| InitError::Io {
                operation: format!("set sysctl {key}={value}"),
                source,
            })?;
        }
    }
    rootfs::mask_paths(linux.masked_paths().as_deref().unwrap_or_default())?;
    rootfs::readonly_paths(linux.readonly_paths().as_deref().unwrap_or_default())?;
    if spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly() == Some(true))
    {
        rootfs::make_root_readonly()?;
    }
    propagation.apply()?;

    let process = spec
        .process()
        .clone()
        .ok_or_else(|| InitError::Process("config.json has no process".to_string()))?;
    // The terminal comes from the container's own devpts, so it is opened
    // after pivot_root; ownership follows the process's user.
    if let Some(socket) = context.console.take() {
        let slave = super::console::open_console(&socket)?;
        let (uid, gid) = (process.user().uid(), process.user().gid());
        nix::unistd::fchown(
            &slave,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(sys("chown the terminal"))?;
        super::console::attach(slave)?;
    }
    let cwd = process.cwd();
    rootfs::ensure_directory(cwd)?;
    super::process::apply_scheduling(&process, linux.personality().as_ref())?;
    for warning in super::process::apply_rlimits(&process)? {
        sync::send_warning(&mut context.sync, &warning);
    }
    let seccomp = match linux.seccomp() {
        Some(profile) => super::seccomp::compile(profile)
            .map_err(|error| InitError::Process(error.to_string()))?,
        None => Vec::new(),
    };
    let no_new_privileges = process.no_new_privileges() == Some(true);
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which the
    // process may be about to lose, so the filter goes in first.
    if !no_new_privileges {
        super::seccomp::install(&seccomp).map_err(|error| InitError::Process(error.to_string()))?;
    }
    super::process::switch_user(&process)?;
    chdir(cwd).map_err(sys(format!("chdir to {}", cwd.display())))?;
    // Checked here, as the process's user, in its working directory and
    // after every mount, so that create fails with the reason instead of
    // the process exiting 127 or 126 after start.
    let resolved = super::process::resolve(&process, true, other_formats)?;
    let with_init = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(annotations::INIT))
        .is_some_and(|v| v == "true");
    mark_descriptors_cloexec(&[fifo.as_raw_fd()]);
    // With no_new_privs the filter goes in right before execve, so that a
    // strict profile need not allow the calls of the start handshake.
    let late_seccomp = if no_new_privileges {
        seccomp
    } else {
        Vec::new()
    };
    Ok(Prepared {
        fifo,
        late_seccomp,
        spec: spec.clone(),
        state_json,
        process: Process {
            path: resolved.path,
            args: resolved.args,
            env: resolved.env,
            with_init,
            main_status: context.main_status.take(),
        },
    })
}

/// Creates a time namespace with `offsets` for the process.
///
/// unshare(2) makes it the namespace of the init's children only. The
/// kernel moves the init itself into it at execve (seen on Linux 6.18, and
/// checked by the `namespaces_time` test), and a minimal init's child
/// enters it at fork. The
/// offsets can be written only until a process has entered the namespace,
/// so this runs before the init forks anything, such as a hook.
fn create_time_namespace(offsets: &str) -> Result<(), InitError> {
    unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
        .map_err(sys("create the time namespace"))?;
    if !offsets.is_empty() {
        fs::write("/proc/self/timens_offsets", offsets).map_err(|source| InitError::Io {
            operation: format!(
                "write linux.timeOffsets ({:?}) to /proc/self/timens_offsets",
                offsets.trim_end()
            ),
            source,
        })?;
    }
    Ok(())
}

/// Switches to UID and GID 0 of the new user namespace, which map to the
/// container's root on the host. Until then the init runs as the host's
/// root, which the namespace does not map, so files it created would fail.
fn become_namespace_root() -> Result<(), InitError> {
    // SAFETY: PR_SET_KEEPCAPS takes integer arguments only; it keeps the
    // namespace's capabilities across the ID change below.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let root_gid = nix::unistd::Gid::from_raw(0);
    let root_uid = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid)
        .map_err(sys("setgid 0 in the user namespace"))?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid)
        .map_err(sys("setuid 0 in the user namespace"))?;
    Ok(())
}

/// Blocks until `corral start` opens the FIFO for reading.
fn wait_for_start(fifo: OwnedFd) {
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    match fs::OpenOptions::new().write(true).open(&path) {
        Ok(mut writer) => {
            let _ = writer.write_all(b"0");
        }
        Err(error) => {
            eprintln!("corral: failed to wait for start on the exec FIFO: {error}");
            // SAFETY: ends this process without running the runtime's
            // destructors, as a forked child must.
            unsafe { libc::_exit(1) }
        }
    }
}

fn execute(process: Process) -> ! {
    if process.with_init {
        run_with_minimal_init(process)
    }
    exec_process(&process)
}

pub(crate) fn exec_process(process: &Process) -> ! {
    reset_signals();
    let error = execve(&process.path, &process.args, &process.env).unwrap_err();
    let name = process.args.first().unwrap_or(&process.path);
    eprintln!(
        "corral: failed to execute {}: {}",
        name.to_string_lossy(),
        error.desc()
    );
    let code = if error == nix::Error::ENOENT {
        127
    } else {
        126
    };
    // SAFETY: ends this process without running destructors of the
    // runtime's copy of the address space, as a child that failed to
    // execute must.
    unsafe { libc::_exit(code) }
}

/// Runs the process as a child of a minimal PID 1 that forwards every
/// signal to it, reaps every zombie, and exits with the process's status.
fn run_with_minimal_init(process: Process) -> ! {
    let all = SigSet::all();
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None);
    // SAFETY: the init is single-threaded (it was cloned from the
    // single-threaded runtime), so the child may run any code after fork.
    let main_pid = match unsafe { fork() } {
        Ok(ForkResult::Child) => exec_process(&process),
        Ok(ForkResult::Parent { child }) => child,
        Err(error) => {
            eprintln!("corral: init failed to fork the process: {error}");
            // SAFETY: as above, a forked child ends without destructors.
            unsafe { libc::_exit(1) }
        }
    };
    seal_minimal_init(process.main_status.as_ref().map(AsRawFd::as_raw_fd));
    crate::memory::release_free_memory();
    loop {
        let Ok(signal) = all.wait() else { continue };
        if signal != Signal::SIGCHLD {
            let _ = kill(main_pid, signal);
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == main_pid => {
                    // SAFETY: PID 1 of the container ends here on purpose.
                    unsafe { libc::_exit(code) }
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == main_pid => {
                    // PID 1 cannot end by the same signal, so the signal's
                    // name goes to the runtime through the status file.
                    if let Some(file) = &process.main_status {
                        let _ = nix::unistd::write(file, (signal as i32).to_string().as_bytes());
                    }
                    // SAFETY: as above.
                    unsafe { libc::_exit(128 + signal as i32) }
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

/// Closes every descriptor of the minimal init but stdio and `keep` (the
/// status file), and makes the init non-dumpable.
///
/// The init runs the runtime's binary as PID 1 for as long as the job
/// lives, and the job's processes share its credentials. The descriptors it
/// inherited from the runtime and its caller are only close-on-exec, and the
/// init never executes, so they stay open in it. While the init is
/// dumpable, any process of the job may reopen them through /proc/1/fd.
/// Once it is non-dumpable, opening /proc/1/fd, /proc/1/exe or /proc/1/mem
/// needs CAP_SYS_PTRACE, which the default capability set lacks.
///
/// NOTE: this runs after the seccomp filter is installed, so a profile that
/// blocks openat, getdents64, close or prctl leaves the init unsealed.
fn seal_minimal_init(keep: Option<RawFd>) {
    let fds: Vec<RawFd> = fs::read_dir("/proc/self/fd")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        if fd > 2 && Some(fd) != keep {
            // SAFETY: nothing of the init uses these descriptors after the
            // fork: it only waits for signals and writes to `keep`. The
            // read_dir descriptor in the list is already closed, which
            // makes this call fail harmlessly with EBADF.
            unsafe { libc::close(fd) };
        }
    }
    // SAFETY: PR_SET_DUMPABLE takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        eprintln!(
            "corral: init failed to become non-dumpable: {}",
            nix::Error::last()
        );
    }
}

/// Restores default dispositions and an empty signal mask: both survive
/// execve, and the runtime ignores SIGPIPE and blocks forwarded signals.
pub(crate) fn reset_signals() {
    for signal in Signal::iterator() {
        if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: SIG_DFL is a valid disposition for every catchable signal,
        // and no handler of this process depends on the old one anymore.
        unsafe {
            let _ = nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl);
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Sets close-on-exec on every descriptor above stderr except `keep`, so no
/// descriptor of the runtime reaches the process.
pub(crate) fn mark_descriptors_cloexec(keep: &[RawFd]) {
    let Ok(entries) = fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: F_SETFD on a descriptor number only changes its flag;
            // a number that was the read_dir descriptor and is now closed
            // makes the call fail harmlessly with EBADF.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

fn bring_loopback_up() -> Result<(), InitError> {
    // SAFETY: socket() has no memory preconditions; the result is checked.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return Err(sys("open a socket to configure lo")(nix::Error::last()));
    }
    // SAFETY: an all-zero ifreq is valid; the name is copied within its
    // 16-byte array and NUL-terminated by the zeroing.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo") {
        *slot = *byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads a complete ifreq from the pointer, which
    // points to the initialized `request` for the duration of the call.
    let result = unsafe { libc::ioctl(socket, libc::SIOCSIFFLAGS, &request) };
    let error = nix::Error::last();
    // SAFETY: `socket` is a descriptor this function opened and owns.
    unsafe { libc::close(socket) };
    if result != 0 {
        return Err(sys("bring lo up")(error));
    }
    Ok(())
}

/// Returns the clone flag of a namespace type.
pub(crate) fn namespace_flag(kind: LinuxNamespaceType) -> CloneFlags {
    match kind {
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}
