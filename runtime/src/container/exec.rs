//! `exec`: runs another process inside a running container, in all of its
//! namespaces and its cgroup, with the process settings of the container or
//! of a given OCI `process` object.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::unistd::{chdir, fork, ForkResult};
use oci_spec::runtime::{Process, Spec};

use super::init::{self, InitError};
use super::run::{wait_forwarding, FORWARDED_SIGNALS};
use super::{cgroup_of, load, ContainerError};
use crate::state::Status;

/// Arguments of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// An OCI `process` object; when unset, the container's own process
    /// settings with `args` in place of its arguments.
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    /// Extra `KEY=VALUE` entries, replacing entries with the same key.
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// `UID[:GID]`.
    pub user: Option<String>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    /// Gives the process a terminal whose master goes to `console_socket`.
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
}

/// The namespaces joined, by their names in /proc/PID/ns, in the order they
/// are joined. The user namespace comes first, so that the process is
/// confined by it as the container's own processes are, and so that it
/// gets the capabilities needed to join the namespaces it owns. The mount
/// namespace comes last among those the child joins, because it changes the
/// root.
///
/// The time namespace is the init's `time_for_children`, because a minimal
/// init stays in the runtime's time namespace while its child runs in the
/// container's.
const JOINED: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    (
        "time_for_children",
        CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    ),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Runs the process and returns its exit status, or 0 at once with `detach`.
pub fn exec(root: &Path, id: &str, options: &ExecOptions) -> Result<i32, ContainerError> {
    let state = load(root, id)?;
    if state.status != Status::Running {
        return Err(ContainerError::WrongStatus {
            id: id.to_string(),
            status: state.status,
            expected: "running",
        });
    }
    let init_pid = state.pid.expect("a running container has a pid");
    let process = exec_process_spec(&state.bundle, options)?;
    // The container's seccomp profile applies to every process in it.
    let config = state.bundle.join("config.json");
    let spec = Spec::load(&config).map_err(|source| ContainerError::LoadSpec {
        path: config.clone(),
        source,
    })?;
    let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => {
            super::seccomp::compile(profile).map_err(|error| ContainerError::InvalidSpec {
                message: error.to_string(),
            })?
        }
        None => Vec::new(),
    };

    let namespace = |name: &str| -> Result<Option<OwnedFd>, ContainerError> {
        let path = PathBuf::from(format!("/proc/{init_pid}/ns/{name}"));
        let theirs = match fs::metadata(&path) {
            Ok(metadata) => metadata,
            // A kernel without time namespaces has no time_for_children.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && name != "mnt" => {
                return Ok(None)
            }
            Err(error) => return Err(super::io_error("inspect namespace", &path)(error)),
        };
        let ours = fs::metadata(format!("/proc/self/ns/{name}")).ok();
        // A namespace the container shares with the host needs no join.
        if ours.is_some_and(|m| {
            std::os::unix::fs::MetadataExt::ino(&m) == std::os::unix::fs::MetadataExt::ino(&theirs)
        }) {
            return Ok(None);
        }
        let file = fs::File::open(&path).map_err(super::io_error("open namespace", &path))?;
        Ok(Some(OwnedFd::from(file)))
    };
    let mut joins = Vec::new();
    for (name, flag) in JOINED {
        if let Some(fd) = namespace(name)? {
            joins.push((flag, fd));
        }
    }
    // Joining the PID namespace affects only children, so this process
    // joins it and its child is then in the container's PID namespace.
    if let Some(pid_namespace) = namespace("pid")? {
        setns(&pid_namespace, CloneFlags::CLONE_NEWPID).map_err(|source| ContainerError::Sys {
            operation: format!("join the PID namespace of container {id}"),
            source,
        })?;
    }

    let mut waited = SigSet::empty();
    for signal in FORWARDED_SIGNALS {
        waited.add(signal);
    }
    waited.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), None).map_err(|source| {
        ContainerError::Sys {
            operation: "block signals before exec".to_string(),
            source,
        }
    })?;

    let terminal = options.tty || process.terminal() == Some(true);
    let console = match (&options.console_socket, terminal) {
        (Some(path), true) => Some(
            UnixStream::connect(path)
                .map_err(super::io_error("connect to console socket", path))?,
        ),
        (None, true) => {
            return Err(ContainerError::InvalidSpec {
                message: "a terminal needs --console-socket".to_string(),
            })
        }
        (_, false) => None,
    };
    let (mut parent_end, mut child_end) =
        UnixStream::pair().map_err(super::io_error("create sync socket", root))?;
    // SAFETY: the runtime is single-threaded, so the child may run any code
    // after fork; it either executes the process or exits with _exit.
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(parent_end);
            exec_child(&mut child_end, joins, &process, &seccomp, console)
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(source) => {
            return Err(ContainerError::Sys {
                operation: format!("fork the exec process for container {id}"),
                source,
            })
        }
    };
    drop(child_end);

    let added = cgroup_of(&state).add_process(child.as_raw());
    let _ = parent_end.write_all(&[super::sync::GO]);
    added?;
    match super::sync::read_report(&mut parent_end)
        .map_err(super::io_error("read exec report", root))?
    {
        super::sync::InitReport::Ready { .. } => {}
        super::sync::InitReport::Failed(message) => {
            let _ = nix::sys::wait::waitpid(child, None);
            return Err(ContainerError::InitFailed { message });
        }
        super::sync::InitReport::Vanished => {}
    }
    if let Some(pid_file) = &options.pid_file {
        super::write_pid_file(pid_file, child.as_raw())?;
    }
    if options.detach {
        return Ok(0);
    }
    Ok(wait_forwarding(child, &waited, None).0)
}

/// Builds the process to run from `--process` or from the container's config.
fn exec_process_spec(bundle: &Path, options: &ExecOptions) -> Result<Process, ContainerError> {
    let mut process = match &options.process_file {
        Some(path) => {
            let text = fs::read(path).map_err(super::io_error("read process file", path))?;
            serde_json::from_slice::<Process>(&text).map_err(|error| {
                ContainerError::InvalidSpec {
                    message: format!("{}: {error}", path.display()),
                }
            })?
        }
        None => {
            let config = bundle.join("config.json");
            let spec = Spec::load(&config).map_err(|source| ContainerError::LoadSpec {
                path: config.clone(),
                source,
            })?;
            let mut process = spec.process().clone().unwrap_or_default();
            if options.args.is_empty() {
                return Err(ContainerError::InvalidSpec {
                    message: "exec needs a command or --process FILE".to_string(),
                });
            }
            process.set_args(Some(options.args.clone()));
            process.set_terminal(Some(false));
            process
        }
    };
    if !options.env.is_empty() {
        let mut env = process.env().clone().unwrap_or_default();
        for entry in &options.env {
            let key = entry.split('=').next().unwrap_or_default();
            env.retain(|existing| existing.split('=').next() != Some(key));
            env.push(entry.clone());
        }
        process.set_env(Some(env));
    }
    if let Some(cwd) = &options.cwd {
        process.set_cwd(cwd.clone());
    }
    if let Some(user) = &options.user {
        let mut parts = user.splitn(2, ':');
        let parse = |text: Option<&str>| text.and_then(|t| t.parse::<u32>().ok());
        let uid = parse(parts.next()).ok_or_else(|| ContainerError::InvalidSpec {
            message: format!("invalid --user {user:?}: expected UID[:GID]"),
        })?;
        let gid = parse(parts.next()).unwrap_or(uid);
        let mut spec_user = process.user().clone();
        spec_user.set_uid(uid);
        spec_user.set_gid(gid);
        process.set_user(spec_user);
    }
    Ok(process)
}

/// The forked child: joins the namespaces, waits to be in the cgroup,
/// applies the process settings and executes.
fn exec_child(
    sync: &mut UnixStream,
    joins: Vec<(CloneFlags, OwnedFd)>,
    process: &Process,
    seccomp: &[seccompiler::BpfProgram],
    console: Option<UnixStream>,
) -> ! {
    let mut go = [0u8; 1];
    let prepared = sync
        .read_exact(&mut go)
        .map_err(|source| InitError::Io {
            operation: "wait for the runtime".to_string(),
            source,
        })
        .and_then(|()| prepare_exec(joins, process, seccomp, console));
    match prepared {
        Ok(resolved) => {
            init::mark_descriptors_cloexec(&[]);
            super::sync::send_ready(sync);
            init::exec_process(&resolved)
        }
        Err(error) => {
            super::sync::send_failure(sync, &init::error_chain(&error));
            // SAFETY: ends the forked child without running the runtime's
            // destructors on its copy of the address space.
            unsafe { libc::_exit(1) }
        }
    }
}

fn prepare_exec(
    joins: Vec<(CloneFlags, OwnedFd)>,
    process: &Process,
    seccomp: &[seccompiler::BpfProgram],
    console: Option<UnixStream>,
) -> Result<init::Process, InitError> {
    for (flag, fd) in &joins {
        setns(fd, *flag).map_err(|source| InitError::Sys {
            operation: format!("join namespace {flag:?}"),
            source,
        })?;
    }
    if let Some(socket) = console {
        let slave = super::console::open_console(&socket)?;
        super::console::attach(slave)?;
    }
    for warning in super::process::apply_rlimits(process)? {
        eprintln!("corral: {warning}");
    }
    let no_new_privileges = process.no_new_privileges() == Some(true);
    let install =
        || super::seccomp::install(seccomp).map_err(|error| InitError::Process(error.to_string()));
    if !no_new_privileges {
        install()?;
    }
    super::process::switch_user(process)?;
    if no_new_privileges {
        install()?;
    }
    let cwd = process.cwd();
    chdir(cwd).map_err(|source| InitError::Sys {
        operation: format!("chdir to {}", cwd.display()),
        source,
    })?;
    let resolved = super::process::resolve(process, false, false)?;
    Ok(init::Process {
        path: resolved.path,
        args: resolved.args,
        env: resolved.env,
        with_init: false,
        main_status: None,
    })
}
