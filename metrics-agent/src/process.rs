//! Metrics of a container's processes from `/proc`: process, thread and file
//! descriptor counts, and the network counters of its network namespace.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use procfs::net::InterfaceDeviceStatus;
use procfs::process::Stat;
use procfs::FromRead;

use crate::collect::ScrapeContext;
use crate::exposition::Samples;
use crate::families;
use crate::files::{pread_all, Descriptor, Network, ProcessDir, TargetFiles};
use crate::parse;
use crate::read::{self, ErrorKind, ProcRead, Records, Vanished};

/// The processes side of one target, as [`collect`] reads it.
pub(crate) struct Processes<'a> {
    /// The cgroup directory whose `cgroup.procs`, and those of its
    /// descendants, list the target's processes.
    pub dir: Option<&'a Path>,
    /// Whether `cgroup.procs` must be opened for every read (cgroup v1).
    pub fresh_pid_lists: bool,
    /// `pids.current` of the cgroup, when the pids controller counts its
    /// tasks.
    pub tasks: Option<u64>,
    /// The container's init, whose network namespace is the container's.
    pub init_pid: Option<i32>,
}

/// Exports the process metrics of a target and the network counters seen by
/// its init (or, without one, by the first process listed in the cgroup).
pub(crate) fn collect(
    context: &ScrapeContext,
    files: &mut TargetFiles,
    processes: &Processes<'_>,
    samples: &mut Samples,
) -> Result<(), Vanished> {
    let mut pids = Vec::new();
    if let Some(dir) = processes.dir {
        list_processes(
            context,
            files,
            dir,
            processes.fresh_pid_lists,
            true,
            &mut pids,
        )?;
        count_processes(context, files, &pids, processes.tasks, samples);
    }

    match processes.init_pid {
        // The state file can still record `running` after the init has
        // exited. A process leaves `cgroup.procs` when it exits, before it
        // is reaped, so a listed init is alive.
        Some(pid) => match network(context, files, pid, pids.contains(&pid), samples) {
            NetworkOutcome::Exited => return Err(Vanished),
            NetworkOutcome::Done => {}
        },
        None => {
            if let Some(&pid) = pids.first() {
                // The process may exit at any time; its cgroup stays exported.
                network(context, files, pid, true, samples);
            }
        }
    }
    Ok(())
}

/// Appends the PIDs in `path/cgroup.procs` and in every descendant cgroup.
fn list_processes(
    context: &ScrapeContext,
    files: &mut TargetFiles,
    path: &Path,
    fresh_pid_lists: bool,
    top: bool,
    pids: &mut Vec<i32>,
) -> Result<(), Vanished> {
    // A child cgroup removed during the walk takes its processes with it.
    let vanished = || if top { Err(Vanished) } else { Ok(()) };
    let dir = match files.dir(context, path, fresh_pid_lists) {
        Ok(Some(dir)) => dir,
        Ok(None) => return Ok(()),
        Err(Vanished) => return vanished(),
    };
    let listing = match context.read(dir, "cgroup.procs") {
        Ok(listing) => listing,
        Err(Vanished) => return vanished(),
    };
    if let Some(listing) = listing {
        for line in listing.lines().filter(|line| !line.trim().is_empty()) {
            match line.trim().parse() {
                Ok(pid) => pids.push(pid),
                Err(_) => context.parse_failed(
                    &path.join("cgroup.procs"),
                    &parse::ParseError::InvalidNumber {
                        value: line.to_string(),
                    },
                ),
            }
        }
    }

    if !dir.may_have_children(context) {
        return Ok(());
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return vanished(),
        Err(error) => {
            context.errors.record(
                ErrorKind::Cgroup,
                format_args!("failed to list {}: {error}", path.display()),
            );
            return Ok(());
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            list_processes(context, files, &entry.path(), fresh_pid_lists, false, pids)?;
        }
    }
    Ok(())
}

/// Exports the number of processes, threads and open descriptors. The
/// threads are `tasks` (`pids.current`) when the pids controller counts
/// them, as cAdvisor exports it, and else the sum over the processes.
fn count_processes(
    context: &ScrapeContext,
    files: &mut TargetFiles,
    pids: &[i32],
    tasks: Option<u64>,
    samples: &mut Samples,
) {
    let mut threads = 0;
    let mut descriptors = 0;
    for &pid in pids {
        let Some(count) = count_descriptors(context, files, pid) else {
            continue;
        };
        descriptors += count.unwrap_or(0);
        if tasks.is_none() {
            if let ProcRead::Value(count) = count_threads(context, pid) {
                threads += count;
            }
        }
    }
    samples.push(&families::PROCESSES, pids.len() as f64);
    samples.push(&families::THREADS, tasks.unwrap_or(threads) as f64);
    samples.push(&families::FILE_DESCRIPTORS, descriptors as f64);
}

/// Returns the number of open descriptors of process `pid`, `Some(None)`
/// when it could not be counted (which is counted as an error), or `None`
/// when the process exited.
fn count_descriptors(
    context: &ScrapeContext,
    files: &mut TargetFiles,
    pid: i32,
) -> Option<Option<u64>> {
    // A kept directory that reports an exited process belongs to an earlier
    // process with this PID, so the PID's directory is opened once more.
    for _ in 0..2 {
        let kept = files.process(pid).is_some();
        let process = match process_dir(context, files, pid) {
            ProcRead::Value(process) => process,
            ProcRead::Exited => return None,
            ProcRead::Failed => return Some(None),
        };
        match descriptors_in(context, process.fd_dir.as_fd()) {
            Ok(count) => return Some(Some(count)),
            Err(errno) if is_exited(errno) => {
                files.forget_process(pid);
                if !kept {
                    return None;
                }
            }
            Err(errno) => {
                record_proc_error(context, "list", "fd", pid, errno);
                return Some(None);
            }
        }
    }
    None
}

/// Counts the entries of the `/proc/PID/fd` directory `fd_dir`. Since Linux
/// 6.2 the size of a procfs `fd` directory is that count, which spares
/// listing it. Earlier kernels report 0, and other file systems (the test
/// fixtures) report their own sizes, so the directory is listed then.
fn descriptors_in(context: &ScrapeContext, fd_dir: BorrowedFd<'_>) -> nix::Result<u64> {
    if context.proc_is_procfs {
        let size = nix::sys::stat::fstat(fd_dir)?.st_size;
        if size > 0 {
            return Ok(u64::try_from(size).unwrap_or(0));
        }
    }
    let fd = nix::fcntl::openat(
        fd_dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut listing = nix::dir::Dir::from_fd(fd)?;
    let mut count = 0;
    for entry in listing.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            count += 1;
        }
    }
    Ok(count)
}

/// Returns what is kept of process `pid`, opening its `/proc/PID/fd`
/// directory when nothing is kept yet.
fn process_dir<'f>(
    context: &ScrapeContext,
    files: &'f mut TargetFiles,
    pid: i32,
) -> ProcRead<&'f mut ProcessDir> {
    if files.process(pid).is_some() {
        return ProcRead::Value(files.process(pid).expect("the process was just found"));
    }
    match open_proc(context, pid, "fd", read::DIRECTORY_FLAGS) {
        Ok(fd) => {
            ProcRead::Value(files.add_process(pid, ProcessDir::new(Descriptor::this_scrape(fd))))
        }
        Err(errno) if is_exited(errno) => ProcRead::Exited,
        Err(errno) => {
            record_proc_error(context, "open", "fd", pid, errno);
            ProcRead::Failed
        }
    }
}

/// Opens `/proc/PID/NAME`.
fn open_proc(context: &ScrapeContext, pid: i32, name: &str, flags: OFlag) -> nix::Result<OwnedFd> {
    let proc_dir = context.proc_dir.as_ref().ok_or(Errno::EBADF)?;
    nix::fcntl::openat(
        proc_dir,
        format!("{pid}/{name}").as_str(),
        flags,
        Mode::empty(),
    )
}

/// Stats `/proc/PID/NAME`, following a symbolic link.
fn stat_proc(
    context: &ScrapeContext,
    pid: i32,
    name: &str,
) -> nix::Result<nix::sys::stat::FileStat> {
    let proc_dir = context.proc_dir.as_ref().ok_or(Errno::EBADF)?;
    nix::sys::stat::fstatat(proc_dir, format!("{pid}/{name}").as_str(), AtFlags::empty())
}

/// Counts the threads of process `pid`. procfs counts a `task` directory's
/// links as 2 plus the threads, which spares generating `stat`. Other file
/// systems (the test fixtures) give `num_threads` of `stat`. Its parser takes
/// the fields after the last `)`, so a command name with spaces or
/// parentheses does not shift them.
fn count_threads(context: &ScrapeContext, pid: i32) -> ProcRead<u64> {
    if context.proc_is_procfs {
        return match stat_proc(context, pid, "task") {
            Ok(stat) => ProcRead::Value(stat.st_nlink.saturating_sub(2)),
            Err(errno) if is_exited(errno) => ProcRead::Exited,
            Err(errno) => {
                record_proc_error(context, "stat", "task", pid, errno);
                ProcRead::Failed
            }
        };
    }
    let mut text = Vec::new();
    let read = open_proc(context, pid, "stat", OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .and_then(|fd| pread_all(fd.as_fd(), Records::One, &mut text).map_err(errno_of));
    match read {
        Ok(()) => {}
        Err(errno) if is_exited(errno) => return ProcRead::Exited,
        Err(errno) => {
            record_proc_error(context, "read", "stat", pid, errno);
            return ProcRead::Failed;
        }
    }
    match Stat::from_read(text.as_slice()) {
        Ok(stat) => ProcRead::Value(u64::try_from(stat.num_threads).unwrap_or(0)),
        Err(error) => {
            context.errors.record(
                ErrorKind::Parse,
                format_args!("invalid content in stat of process {pid}: {error}"),
            );
            ProcRead::Failed
        }
    }
}

fn errno_of(error: io::Error) -> Errno {
    Errno::from_raw(error.raw_os_error().unwrap_or(libc::EIO))
}

fn record_proc_error(context: &ScrapeContext, operation: &str, name: &str, pid: i32, errno: Errno) {
    context.errors.record(
        ErrorKind::Proc,
        format_args!("failed to {operation} {name} of process {pid}: {errno}"),
    );
}

/// Returns whether a failed `/proc` access means that the process exited.
fn is_exited(errno: Errno) -> bool {
    matches!(errno, Errno::ENOENT | Errno::ESRCH)
}

enum NetworkOutcome {
    Done,
    Exited,
}

/// Exports the interface counters of `pid`'s network namespace, except `lo`,
/// unless that namespace is the agent's own. A job with `network: host`
/// shares the host's interfaces, whose counters are not the job's traffic.
///
/// `listed` states that the process was in its cgroup's `cgroup.procs` in
/// this scrape, and so alive. Then what an earlier scrape found of its
/// namespace is used again, with the `net/dev` it opened. Otherwise
/// `/proc/PID/ns/net` shows whether the process exited and which namespace
/// it has.
fn network(
    context: &ScrapeContext,
    files: &mut TargetFiles,
    pid: i32,
    listed: bool,
    samples: &mut Samples,
) -> NetworkOutcome {
    let process = match process_dir(context, files, pid) {
        ProcRead::Value(process) => process,
        ProcRead::Exited => return NetworkOutcome::Exited,
        ProcRead::Failed => return NetworkOutcome::Done,
    };
    if !listed || process.network.is_none() {
        let namespace = match stat_proc(context, pid, "ns/net") {
            Ok(stat) => (stat.st_dev, stat.st_ino),
            Err(errno) if is_exited(errno) => {
                files.forget_process(pid);
                return NetworkOutcome::Exited;
            }
            Err(errno) => {
                record_proc_error(context, "stat", "ns/net", pid, errno);
                return NetworkOutcome::Done;
            }
        };
        // Without the agent's own namespace to compare with, the counters
        // might be the host's.
        if context
            .host_network_namespace
            .is_none_or(|host| host == namespace)
        {
            process.network = Some(Network::Host);
        } else if !matches!(&process.network, Some(Network::Own { namespace: seen, .. }) if *seen == namespace)
        {
            match open_proc(context, pid, "net/dev", OFlag::O_RDONLY | OFlag::O_CLOEXEC) {
                Ok(fd) => {
                    process.network = Some(Network::Own {
                        namespace,
                        dev: Descriptor::this_scrape(fd),
                    })
                }
                Err(errno) if is_exited(errno) => return NetworkOutcome::Exited,
                Err(errno) => {
                    process.network = None;
                    record_proc_error(context, "open", "net/dev", pid, errno);
                    return NetworkOutcome::Done;
                }
            }
        }
    }
    let Some(Network::Own { dev, .. }) = &process.network else {
        return NetworkOutcome::Done;
    };
    let mut bytes = Vec::new();
    if let Err(error) = pread_all(dev.as_fd(), Records::Many, &mut bytes) {
        process.network = None;
        let errno = errno_of(error);
        if is_exited(errno) {
            return NetworkOutcome::Exited;
        }
        record_proc_error(context, "read", "net/dev", pid, errno);
        return NetworkOutcome::Done;
    }
    let interfaces = match InterfaceDeviceStatus::from_read(bytes.as_slice()) {
        Ok(InterfaceDeviceStatus(interfaces)) => interfaces,
        Err(error) => {
            context.errors.record(
                ErrorKind::Parse,
                format_args!("invalid content in net/dev of process {pid}: {error}"),
            );
            return NetworkOutcome::Done;
        }
    };

    let mut interfaces: Vec<_> = interfaces
        .into_values()
        .filter(|interface| interface.name != "lo")
        .collect();
    interfaces.sort_by(|left, right| left.name.cmp(&right.name));
    for interface in interfaces {
        let counters = [
            (&families::NETWORK_RECEIVE_BYTES, interface.recv_bytes),
            (&families::NETWORK_RECEIVE_PACKETS, interface.recv_packets),
            (&families::NETWORK_RECEIVE_ERRORS, interface.recv_errs),
            (&families::NETWORK_RECEIVE_DROPPED, interface.recv_drop),
            (&families::NETWORK_TRANSMIT_BYTES, interface.sent_bytes),
            (&families::NETWORK_TRANSMIT_PACKETS, interface.sent_packets),
            (&families::NETWORK_TRANSMIT_ERRORS, interface.sent_errs),
            (&families::NETWORK_TRANSMIT_DROPPED, interface.sent_drop),
        ];
        for (family, value) in counters {
            samples.push_labeled(family, ("interface", interface.name.clone()), value as f64);
        }
    }
    NetworkOutcome::Done
}
