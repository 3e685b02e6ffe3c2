//! Metrics of a container's processes from `/proc`: process, thread and file
//! descriptor counts, and the network counters of its network namespace.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use procfs::net::InterfaceDeviceStatus;
use procfs::process::Stat;
use procfs::FromRead;

use crate::collect::{self, ScrapeContext};
use crate::exposition::Samples;
use crate::families;
use crate::parse;
use crate::read::{self, ErrorKind, ProcRead, Records, Vanished};

/// Exports the process metrics of the cgroup rooted at `processes_dir` and
/// the network counters seen by `init_pid` (or, without one, by the first
/// process listed in the cgroup).
pub(crate) fn collect(
    context: &ScrapeContext,
    processes_dir: Option<&Path>,
    init_pid: Option<i32>,
    samples: &mut Samples,
) -> Result<(), Vanished> {
    let mut pids = Vec::new();
    if let Some(dir) = processes_dir {
        list_processes(context, dir, true, &mut pids)?;
        count_processes(context, &pids, samples);
    }

    match init_pid {
        // The state file can still record `running` after the init has
        // exited, and then its `/proc` entry is gone.
        Some(pid) => match network(context, pid, samples) {
            NetworkOutcome::Exited => return Err(Vanished),
            NetworkOutcome::Done => {}
        },
        None => {
            if let Some(&pid) = pids.first() {
                // The process may exit at any time; its cgroup stays exported.
                network(context, pid, samples);
            }
        }
    }
    Ok(())
}

/// Appends the PIDs in `path/cgroup.procs` and in every descendant cgroup.
fn list_processes(
    context: &ScrapeContext,
    path: &Path,
    top: bool,
    pids: &mut Vec<i32>,
) -> Result<(), Vanished> {
    // A child cgroup removed during the walk takes its processes with it.
    let vanished = || if top { Err(Vanished) } else { Ok(()) };
    let dir = match context.open_dir(path) {
        Ok(Some(dir)) => dir,
        Ok(None) => return Ok(()),
        Err(Vanished) => return vanished(),
    };
    let listing = match context.read(&dir, "cgroup.procs") {
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

    if !dir.may_have_children() {
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
            list_processes(context, &entry.path(), false, pids)?;
        }
    }
    Ok(())
}

fn count_processes(context: &ScrapeContext, pids: &[i32], samples: &mut Samples) {
    let mut threads = 0;
    let mut descriptors = 0;
    for &pid in pids {
        let root = context.proc_root.join(pid.to_string());
        // `stat` is cheaper for the kernel to generate than `status`, and
        // its parser takes the fields after the last `)`, so a command name
        // with spaces or parentheses does not shift them.
        match read_proc::<Stat>(context, &root, "stat", Records::One, pid) {
            ProcRead::Value(stat) => threads += u64::try_from(stat.num_threads).unwrap_or(0),
            ProcRead::Exited => continue,
            ProcRead::Failed => {}
        }
        if let Some(count) = count_descriptors(context, &root, pid) {
            descriptors += count;
        }
    }
    samples.push(&families::PROCESSES, pids.len() as f64);
    samples.push(&families::THREADS, threads as f64);
    samples.push(&families::FILE_DESCRIPTORS, descriptors as f64);
}

/// Reads and parses the file `name` of process `pid`, whose `/proc`
/// directory is `root`.
fn read_proc<T: FromRead>(
    context: &ScrapeContext,
    root: &Path,
    name: &str,
    records: Records,
    pid: i32,
) -> ProcRead<T> {
    let path = root.join(name);
    let text = match read::file(&path, records) {
        Ok(text) => text,
        Err(error) if is_exited(&error) => return ProcRead::Exited,
        Err(error) => {
            context.errors.record(
                ErrorKind::Proc,
                format_args!("failed to read {name} of process {pid}: {error}"),
            );
            return ProcRead::Failed;
        }
    };
    match T::from_read(text.as_bytes()) {
        Ok(value) => ProcRead::Value(value),
        Err(error) => {
            context.errors.record(
                ErrorKind::Parse,
                format_args!("invalid content in {}: {error}", path.display()),
            );
            ProcRead::Failed
        }
    }
}

/// Counts the open file descriptors of a process. Since Linux 6.2 the size
/// of a procfs `/proc/PID/fd` directory is that count, which spares listing
/// it. Earlier kernels report 0, and other file systems (the test fixtures)
/// report their own sizes, so the directory is listed then.
fn count_descriptors(context: &ScrapeContext, root: &Path, pid: i32) -> Option<u64> {
    let dir = root.join("fd");
    let counted = if context.proc_is_procfs {
        std::fs::metadata(&dir)
            .map(|metadata| metadata.size())
            .and_then(|size| match size {
                0 => list_count(&dir),
                count => Ok(count),
            })
    } else {
        list_count(&dir)
    };
    match counted {
        Ok(count) => Some(count),
        Err(error) if is_exited(&error) => None,
        Err(error) => {
            context.errors.record(
                ErrorKind::Proc,
                format_args!("failed to list {} of process {pid}: {error}", dir.display()),
            );
            None
        }
    }
}

fn list_count(dir: &Path) -> io::Result<u64> {
    Ok(std::fs::read_dir(dir)?.count() as u64)
}

/// Returns whether a failed `/proc` access means that the process exited.
fn is_exited(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound || error.raw_os_error() == Some(libc::ESRCH)
}

enum NetworkOutcome {
    Done,
    Exited,
}

/// Exports the interface counters of `pid`'s network namespace, except `lo`,
/// unless that namespace is the agent's own. A job with `network: host`
/// shares the host's interfaces, whose counters are not the job's traffic.
fn network(context: &ScrapeContext, pid: i32, samples: &mut Samples) -> NetworkOutcome {
    let root = context.proc_root.join(pid.to_string());
    let namespace_path = root.join("ns/net");
    match collect::namespace_id(&namespace_path) {
        // Without the agent's own namespace to compare with, the counters
        // might be the host's.
        Ok(namespace)
            if context
                .host_network_namespace
                .is_none_or(|host| host == namespace) =>
        {
            return NetworkOutcome::Done
        }
        Ok(_) => {}
        Err(error) if is_exited(&error) => return NetworkOutcome::Exited,
        Err(error) => {
            context.errors.record(
                ErrorKind::Proc,
                format_args!("failed to stat {}: {error}", namespace_path.display()),
            );
            return NetworkOutcome::Done;
        }
    }

    let interfaces =
        match read_proc::<InterfaceDeviceStatus>(context, &root, "net/dev", Records::Many, pid) {
            ProcRead::Value(InterfaceDeviceStatus(interfaces)) => interfaces,
            ProcRead::Exited => return NetworkOutcome::Exited,
            ProcRead::Failed => return NetworkOutcome::Done,
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
